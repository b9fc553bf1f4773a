# Time of a 1M-key full sync into a percore replica: old and new replica binaries in turn,
# the same percore primary.
# Usage: python3 full-sync.py NEW_PERCORE OLD_PERCORE   (needs redis-cli and redis-py)
import subprocess, time, sys, os, shutil, redis, re, tempfile
new, base = sys.argv[1], sys.argv[2]
W=tempfile.mkdtemp(prefix="full-sync-")
# 1M keys: MSETs of 1000 keys `key:<i>` = `value-<i>`, as redis-cli --pipe input.
with open(W+"/fill.resp","wb") as f:
    for b_ in range(1000):
        parts=[b"MSET"]
        for i in range(b_*1000,(b_+1)*1000):
            parts.append(b"key:%d"%i); parts.append(b"value-%d"%i)
        f.write(b"*%d\r\n"%len(parts)+b"".join(b"$%d\r\n%s\r\n"%(len(p),p) for p in parts))
pd=W+"/p"; shutil.rmtree(pd,ignore_errors=True); os.makedirs(pd)
P=subprocess.Popen(["chrt","-f","50","taskset","-c","0",new,"--port","47501","--shards","1","--dir",pd],stdout=open(W+"/p.log","w"),stderr=subprocess.STDOUT)
time.sleep(1)
t=time.time()
subprocess.run("redis-cli -p 47501 --pipe < %s/fill.resp > /dev/null"%W, shell=True, check=True)
c=redis.Redis(port=47501)
print("fill: %.1fs dbsize %d"%(time.time()-t, c.dbsize()), flush=True)
def ts(line):
    m=re.search(r"(\d\d):(\d\d):(\d\d\.\d+)",line); return int(m[1])*3600+int(m[2])*60+float(m[3])
for run in range(3):
    for name,b in (("before",base),("after",new)):
        d=W+"/r"; shutil.rmtree(d,ignore_errors=True); os.makedirs(d)
        t=time.time()
        R=subprocess.Popen(["chrt","-f","50","taskset","-c","1",b,"--port","47502","--shards","1","--dir",d,"--replicaof","127.0.0.1","47501"],stdout=open(W+"/r.log","w"),stderr=subprocess.STDOUT)
        r=None
        cpu_recv=None
        def cpu():
            f=open(f"/proc/{R.pid}/stat").read().rsplit(")",1)[1].split(); return int(f[11])+int(f[12])
        while True:
            time.sleep(0.01)
            log=open(W+"/r.log").read()
            if cpu_recv is None and "Flushing old data" in log: cpu_recv=cpu()
            if "Finished with success" in log: break
            if time.time()-t>170: print("timeout"); break
        el=time.time()-t
        lines=log.splitlines()
        def at(s): return next(ts(l) for l in lines if s in l)
        recv=at("Flushing old data")-at("receiving streamed RDB")
        load=at("Finished with success")-at("Loading DB in memory")
        print(f"run {run} {name}: start to synced {el:.2f}s; payload received in {recv:.2f}s, loaded in {load:.2f}s; replica CPU until the payload was in: {cpu_recv} ticks (1/100 s)", flush=True)
        R.terminate(); R.wait()
P.terminate(); P.wait()
