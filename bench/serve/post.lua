-- wrk script: POST the original's body (BODY_FILE) to /predict.
local f = assert(io.open(os.getenv("BODY_FILE") or "bench/serve/body.json", "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()
