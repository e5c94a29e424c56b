-- wrk script for the echo scenario: every request is a POST of a 65,536-byte body
-- (wrk adds the Content-Length header).
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
