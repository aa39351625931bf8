"""The Python original's service, reproduced for the benchmark: FastAPI + scikit-learn.

Like the original it trains LogisticRegression(max_iter=1000) on the digits data at import
(80/20 split) and answers POST /predict {"image": [64 numbers]} with {"predicted_class": n}.
Run by bench/serve/run.sh with one uvicorn worker, as the original ran.
"""

from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

digits = load_digits()
X_train, X_test, y_train, y_test = train_test_split(
    digits.data, digits.target, test_size=0.2, random_state=42
)
model = LogisticRegression(max_iter=1000)
model.fit(X_train, y_train)

app = FastAPI()


class Image(BaseModel):
    image: list[float]


@app.post("/predict")
def predict(req: Image):
    prediction = model.predict([req.image])
    return {"predicted_class": int(prediction[0])}
