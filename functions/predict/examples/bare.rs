//! The benchmark's ceiling: a bare axum server whose `POST /predict` returns a fixed,
//! predict-shaped answer without reading the model. Same runtime settings as `predict`
//! (multi-threaded, one worker per core). `PORT` (default 8001) on 127.0.0.1.
//!
//! `cargo run --release -p predict --example bare`

use axum::Router;
use axum::http::header;
use axum::routing::post;

const ANSWER: &str = r#"{"predicted_class":0,"label":"0","probabilities":[0.9991,0.0001,0.0001,0.0001,0.0001,0.0001,0.0001,0.0001,0.0001,0.0001]}"#;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8001);
    let app = Router::new().route(
        "/predict",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], ANSWER) }),
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            axum::serve(listener, app).await
        })
}
