# Micro-benchmark used for the overhead notes; not part of the test suite. Loopback TCP connect +
# accept + close, pinned to CPU 1; prints the best per-connection time of 5 samples of 2000.
# Run: python3 tests/benches/micro/connect_loop.py, without the agent and with
# `taskset -c 0 target/debug/relaywatch run --state-dir /tmp/rw --socket /tmp/rw.sock --nameserver 127.0.0.1:1 --include-loopback --log-connections`.
# Per-program cost: sysctl kernel.bpf_stats_enabled=1, then run_time_ns / run_cnt from
# `bpftool prog show -j` before and after a run.
import socket,time,os
os.sched_setaffinity(0,{1})
l=socket.socket();l.bind(('127.0.0.1',0));l.listen(1024);a=l.getsockname()
best=1e9
for r in range(5):
    t=time.time()
    for i in range(2000):
        s=socket.socket();s.connect(a);c,_=l.accept();c.close();s.close()
    best=min(best,(time.time()-t)/2000*1e6)
print('connect loop best',round(best,1),'us')
