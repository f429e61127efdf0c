# A client that never reads: joins `/` of a Volley server over a raw WebSocket and sends up to
# 1,500 `echo` events of 512 KiB without reading anything, while the server's RSS is sampled
# every 20 ms. Usage: python3 bench/never_reads.py PORT SERVER_PID (e.g. against
# target/release/examples/bench-server). Prints what was sent, why it stopped, and the growth.
import socket, os, sys, time, threading, base64
port=int(sys.argv[1]); pid=int(sys.argv[2])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
peak=[rss()]; before=peak[0]; stop=[False]
def sampler():
    while not stop[0]:
        peak[0]=max(peak[0], rss()); time.sleep(0.02)
threading.Thread(target=sampler, daemon=True).start()
s=socket.create_connection(("127.0.0.1",port))
key=base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
time.sleep(0.3); s.recv(65536)
def frame(payload):
    b=payload.encode(); n=len(b); mask=os.urandom(4)
    hdr=bytes([0x81])
    if n<126: hdr+=bytes([0x80|n])
    elif n<65536: hdr+=bytes([0x80|126])+n.to_bytes(2,'big')
    else: hdr+=bytes([0x80|127])+n.to_bytes(8,'big')
    masked=bytes(c ^ mask[i%4] for i,c in enumerate(b)) if n<1000 else None
    if masked is None:
        import itertools
        m=(mask*(n//4+1))[:n]
        masked=(int.from_bytes(b,'big') ^ int.from_bytes(m,'big')).to_bytes(n,'big')
    return hdr+mask+masked
s.sendall(frame("40"))
big=frame('42["echo","'+("x"*(512*1024))+'"]')
s.settimeout(2.0)
sent=0; t0=time.time()
try:
    while sent<1500 and time.time()-t0<15:
        s.sendall(big); sent+=1
except Exception as e:
    err=repr(e)
else:
    err="none"
time.sleep(2)
stop[0]=True
print(f"sent {sent} events of 512 KiB in {time.time()-t0:.1f}s; stop: {err}; server RSS before {before} KiB, peak {peak[0]} KiB, growth {(peak[0]-before)/1024:.1f} MiB")
