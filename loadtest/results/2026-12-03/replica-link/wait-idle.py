# Context switches and CPU ticks of a server over 10 s with one client parked in WAIT.
# Usage: python3 wait-idle.py NEW_PERCORE OLD_PERCORE   (needs redis-server and redis-py)
import subprocess, time, sys, os, glob, socket, shutil, tempfile
def stats(pid):
    v=n=0
    for st in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for l in open(st):
                if l.startswith("voluntary_ctxt_switches"): v+=int(l.split()[1])
                if l.startswith("nonvoluntary_ctxt_switches"): n+=int(l.split()[1])
        except FileNotFoundError: pass
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    return v,n,int(f[11])+int(f[12])
def run(name, argv, port, replica_argv=None, want=1):
    d=tempfile.mkdtemp(prefix=f"wait-idle-{port}-")
    P=subprocess.Popen(["chrt","-f","50","taskset","-c","1"]+argv,cwd=d,stdout=open(d+"/log","w"),stderr=subprocess.STDOUT)
    R=None
    time.sleep(1.0)
    if replica_argv:
        R=subprocess.Popen(replica_argv,cwd=d,stdout=open(d+"/rlog","w"),stderr=subprocess.STDOUT)
        import redis
        c=redis.Redis(port=port)
        for _ in range(300):
            if c.info("replication").get("connected_slaves",0)>=1: break
            time.sleep(0.1)
        c.set("x","y"); c.execute_command("WAIT",1,5000)
        time.sleep(1)
    s=socket.create_connection(("127.0.0.1",port))
    if want:  # 0: the server at rest, its client idle
        s.sendall(b"WAIT %d 0\r\n"%want)
    time.sleep(0.5)
    a=stats(P.pid); t=time.time(); time.sleep(10); b=stats(P.pid); el=time.time()-t
    print(f"{name}: WAIT {want} 0 parked {el:.1f}s: voluntary_ctxt_switches +{b[0]-a[0]}, nonvoluntary +{b[1]-a[1]}, CPU ticks (utime+stime, 1/100 s) +{b[2]-a[2]}")
    s.close(); P.terminate(); P.wait()
    if R: R.terminate(); R.wait()
new, base = sys.argv[1], sys.argv[2]
pc=lambda b,p: [b,"--port",str(p),"--shards","2","--dir","."]
print("-- no replica attached")
run("percore before", pc(base,47301), 47301)
run("percore after ", pc(new,47302), 47302)
run("redis-server 7.0", ["redis-server","--port","47303","--save","","--appendonly","no"], 47303)
print("-- one replica attached (redis-server 7.0 replica), WAIT asks for 2")
for name,b,p in (("percore before",base,47311),("percore after ",new,47312)):
    run(name, pc(b,p), p, ["redis-server","--port",str(p+100),"--replicaof","127.0.0.1",str(p),"--save","","--repl-diskless-load","disabled"], want=2)
run("redis-server 7.0", ["redis-server","--port","47313","--save","","--appendonly","no","--repl-diskless-sync-delay","0"], 47313, ["redis-server","--port","47413","--replicaof","127.0.0.1","47313","--save",""], want=2)
print("-- at rest, the client sends nothing (the baseline)")
run("percore after, no replica", pc(new,47321), 47321, want=0)
run("percore after, one replica", pc(new,47322), 47322, ["redis-server","--port","47422","--replicaof","127.0.0.1","47322","--save","","--repl-diskless-load","disabled"], want=0)
