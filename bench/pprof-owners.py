#!/usr/bin/env python3
"""CPU of a Go profile by owner: nats-server (the broker), the Go garbage
collector, or our code (by its outermost function of services, web,
store). Each sample goes to one owner, so the lines add up to the total.

    python3 bench/pprof-owners.py PROFILE   # needs go on PATH
"""
import sys, subprocess, re, collections
prof = sys.argv[1]
out = subprocess.run(["go","tool","pprof","-traces",prof],capture_output=True,text=True,cwd=__import__("os").path.dirname(__import__("os").path.abspath(__file__))).stdout
blocks = out.split("-----------+-------------------------------------------------------")
tot = collections.Counter(); total=0.0
def secs(s):
    m=re.match(r'\s*([\d.]+)(ms|s|us|µs)',s)
    if not m: return None
    v=float(m.group(1)); u=m.group(2)
    return v/1000 if u=='ms' else v if u=='s' else v/1e6
detail = collections.Counter()
for b in blocks:
    lines=[l for l in b.strip().split("\n") if l.strip()]
    idx=[i for i,l in enumerate(lines) if re.match(r'\s*[\d.]+(ms|s|us|µs)\s',l)]
    if not idx: continue
    lines=lines[idx[0]:]
    v=secs(lines[0].split()[0])
    if v is None: continue
    frames=[re.sub(r'^\s*[\d.]+\w*\s+','',lines[0])]+[l.strip() for l in lines[1:]]
    total+=v
    joined="\n".join(frames)
    ours = re.search(r'thinfleet/thinfleet/(services|web|store|wire|ratelimit|broker|metrics)', joined)
    if 'gcBgMarkWorker' in joined or 'gcAssist' in joined or 'bgsweep' in joined or 'bgscavenge' in joined:
        k='Go GC (all allocations)'
    elif ours:
        # attribute to our top-most (outermost) package function
        ofr=[f for f in frames if re.search(r'thinfleet/thinfleet/',f)]
        gen=re.compile(r'(Run\.func\d+(\.\d+)?|\.keep(\.func\d+)?|Handler\.|requireToken|ensure\.func|Rewatch|watchOnce|errgroup|goRun)')
        spec=[f for f in ofr if not gen.search(f)]
        f=(spec or ofr)[-1]
        if 'web.(*Server)' in f or 'Handler' in ofr[-1]: f='web: HTTP handlers (the simulator\'s API polls)'
        k='ours: '+re.sub(r'^.*thinfleet/thinfleet/','',f)[:70]
    elif 'nats-io/nats-server' in joined:
        nf=[f for f in frames if 'nats-server' in f and not re.search(r'startGoRoutine|createClientEx\.func', f)]
        k='nats-server: '+re.sub(r'^.*server\.','',(nf or [frames[-1]])[-1])[:60]
    elif 'nats-io/nats.go' in joined:
        k='nats.go client (our connections)'
    else:
        k='other: '+frames[-1][:60]
    tot[k]+=v
print(f"total {total:.2f}s")
try:
    for k,v in tot.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 25):
        print(f"{v:7.2f}s {100*v/total:5.1f}%  {k}")
except BrokenPipeError:
    pass
