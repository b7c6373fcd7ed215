-- The same POST every time: the body from BODY, and AUTH and ETAG (an
-- If-None-Match) as headers when set.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BODY")
if os.getenv("AUTH") then wrk.headers["Authorization"] = "Bearer " .. os.getenv("AUTH") end
if os.getenv("ETAG") then wrk.headers["If-None-Match"] = os.getenv("ETAG") end
