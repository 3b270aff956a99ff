"""Both ends of the network benchmark (bench/network.sh).

  peer.py serve PORT            a sink on PORT (reads to EOF, answers "k")
                                and an echo on PORT+1 (one read, echoed,
                                closed), on 0.0.0.0, threads per connection
  peer.py bulk HOST PORT BYTES  sends BYTES to the sink, prints seconds
  peer.py conns HOST PORT N     N connections in turn to the echo, each a
                                64-byte request and its answer; prints
                                connections per second
  peer.py dns SERVER NAME N     N A queries for NAME to SERVER:53, 16 in
                                flight; prints queries per second
"""
import os, socket, struct, sys, threading, time


def sink(conn):
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass
    conn.sendall(b"k")
    conn.close()


def echo(conn):
    data = conn.recv(4096)
    conn.sendall(data)
    conn.close()


def listen(port, handler):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def serve(port):
    threading.Thread(target=listen, args=(port + 1, echo), daemon=True).start()
    print("ready", flush=True)
    listen(port, sink)


def bulk(host, port, total):
    chunk = memoryview(os.urandom(1 << 20))
    s = socket.create_connection((host, port))
    start = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b"k"
    print(f"{time.perf_counter() - start:.4f}")


def conns(host, port, n):
    req = b"x" * 64
    start = time.perf_counter()
    for _ in range(n):
        s = socket.create_connection((host, port + 1))
        s.sendall(req)
        got = b""
        while len(got) < len(req):
            part = s.recv(4096)
            if not part:
                break
            got += part
        assert got == req, got
        s.close()
    print(f"{n / (time.perf_counter() - start):.0f}")


def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


def dns(server, name, n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((server, 53))
    start = time.perf_counter()
    sent = done = 0
    while done < n:
        while sent < n and sent - done < 16:
            s.send(query(sent & 0xFFFF, name))
            sent += 1
        answer = s.recv(512)
        assert struct.unpack(">H", answer[6:8])[0] >= 1, "no answer"
        done += 1
    print(f"{n / (time.perf_counter() - start):.0f}")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "serve":
        serve(int(args[0]))
    elif mode == "bulk":
        bulk(args[0], int(args[1]), int(args[2]))
    elif mode == "conns":
        conns(args[0], int(args[1]), int(args[2]))
    elif mode == "dns":
        dns(args[0], args[1], int(args[2]))
