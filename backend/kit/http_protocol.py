"""The API's HTTP/1.1 protocol: uvicorn's on httptools, a C parser (h11's pure-Python one cost a sixth
of a short request's CPU), answering a request it cannot parse the way the API answers bad input, with
a code in a JSON body, where uvicorn answers in plain text. httptools refuses what HTTP forbids before
the app sees it: a control character in a header value, say."""

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MALFORMED = json.dumps(
    {"error": {"code": "malformed_request", "message": "the request is not valid HTTP/1.1", "details": {}}}
).encode()


class HttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        head = [STATUS_LINE[400]]
        head += [b"%s: %s\r\n" % header for header in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(MALFORMED),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + MALFORMED)
        self.transport.close()
