"""A minimal Python service doing gpuconv serve's job with OpenCV, for bench/serve.sh.

POST /v1/filter with a PNG body answers the lesson's edge image, min(|V| + |H|, 255) over the
'valid' windows, as a PNG at compression 1: Python's ThreadingHTTPServer (a thread per
connection, HTTP/1.1 keep-alive), cv2.imdecode, two cv2.filter2D, convertScaleAbs, add,
cv2.imencode. OpenCV releases the GIL in each of those, so threads run them in parallel.

    python bench/serve_opencv.py PORT
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

VERTICAL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
HORIZONTAL = VERTICAL.T.copy()


class Filter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None or min(image.shape) < 3:
            self.answer(400, b'{"error": "not an image of at least 3x3"}', "application/json")
            return
        v = cv2.convertScaleAbs(cv2.filter2D(image, cv2.CV_16S, VERTICAL)[1:-1, 1:-1])
        h = cv2.convertScaleAbs(cv2.filter2D(image, cv2.CV_16S, HORIZONTAL)[1:-1, 1:-1])
        _, png = cv2.imencode(".png", cv2.add(v, h), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        self.answer(200, png.tobytes(), "image/png")

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Filter)
    server.daemon_threads = True
    server.serve_forever()
