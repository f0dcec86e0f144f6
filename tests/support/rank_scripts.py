"""Scripts a distributed run's processes execute in the emulator's cluster tests (the run executor's and the
jobs API's): each rank writes what it saw as ``rank{N}.json`` into the folder given as its first argument
(``outputs`` when none, the run's own output folder)."""

# Rendezvous over MASTER_ADDR:MASTER_PORT: rank 0 listens, every other rank connects, says who it is and waits
# for rank 0's answer, then every rank writes what it saw. A rank that cannot reach rank 0 fails the run.
RENDEZVOUS = """
import json, os, pathlib, socket, sys, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
peers = []
if rank == 0:
    server = socket.create_server(address)
    server.settimeout(60)
    for _ in range(world - 1):
        conn, _ = server.accept()
        peers.append(int(conn.recv(16).decode()))
        conn.sendall(b"ok")
        conn.close()
else:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = socket.create_connection(address, timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.sendall(str(rank).encode())
    assert conn.recv(2) == b"ok"
names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
seen = {name: os.environ[name] for name in names}
seen["peers"] = sorted(peers)
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "outputs")
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{rank}.json").write_text(json.dumps(seen))
print(f"rank {rank} of {world} done")
"""

# What Open MPI and Azure ML's launcher give each process: every OMPI_COMM_WORLD_* and AZ_BATCH* variable.
MPI_ENV = """
import json, os, pathlib, sys
names = [n for n in os.environ if n.startswith(("OMPI_COMM_WORLD_", "AZ_BATCH"))]
rank = os.environ["OMPI_COMM_WORLD_RANK"]
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "outputs")
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{rank}.json").write_text(json.dumps({n: os.environ[n] for n in names}))
"""
