-- The same request every time.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"meta":{"platform":"iphone","version":120,"device_id":"d1"},' ..
           '"params":{"score":95,"platform":"iphone","version_code":130}}'
