#!/usr/bin/env python3
"""kill -9 fault injection for policy versions (docs/versions.md): runs fit, update and rollback
on one policy folder, SIGKILLs each at a random moment (half uniform over its duration, half in
its last 30%, where it writes), and checks after every kill that `tracer predict` loads the
folder; at the end, that the next write removes every leftover.
Usage: python3 scripts/kill9_versions.py [RUNS=240] [SEED=1]   (TRACER=path/to/tracer)"""
import subprocess, random, time, os, json, sys, signal
import tempfile
HERE=os.path.dirname(os.path.abspath(__file__))
T=os.environ.get('TRACER', os.path.join(HERE,'..','build','tracer'))
WORK=tempfile.mkdtemp(prefix='tracer-kill9-')
P=os.path.join(WORK,'P')
os.chdir(WORK)
import random as _r
_g=_r.Random(3)
lines=[]
import collections
_c=collections.Counter()
for l in open(os.path.join(HERE,'..','data','banking77','train.jsonl')):
    j=json.loads(l); t=j['teacher']
    if t not in _c and len(_c)>=5: continue
    if _c[t]>=60: continue
    _c[t]+=1; lines.append(j)
open('good.jsonl','w').write(''.join(json.dumps(j)+'\n' for j in lines))
open('noise.jsonl','w').write(''.join(json.dumps(dict(j,teacher='L%d'%_g.randrange(3)))+'\n' for j in lines))
subprocess.run(['rm','-rf',P])
subprocess.run([T,'fit','good.jsonl','-o',P,'-q','--no-report','--threads','1','--zoo','logreg_strong,complement_nb'])
def ops():
    return [
     [T,'fit','good.jsonl','-o',P,'-q','--threads','1','--zoo','logreg_strong,complement_nb','--promote','always','--keep','4'],
     [T,'update',P,'-q','--no-db','--threads','1','--promote','always','--keep','4','--traces','noise.jsonl'],
     [T,'rollback',P,'-q'],
    ]
# durations
dur=[]
for cmd in ops():
    t=time.time(); subprocess.run(cmd,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); dur.append(time.time()-t)
print('durations',dur,flush=True)
rng=random.Random(int(sys.argv[2]) if len(sys.argv)>2 else 1)
n=int(sys.argv[1]) if len(sys.argv)>1 else 240; killed=0; finished=0; bad=0; by=[0,0,0]
for i in range(n):
    k=i%3; cmd=ops()[k]
    d=dur[k]*(rng.uniform(0,1.1) if rng.random()<0.5 else rng.uniform(0.7,1.05))
    p=subprocess.Popen(cmd,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    time.sleep(d)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL); killed+=1; by[k]+=1
    else: finished+=1
    p.wait()
    r=subprocess.run([T,'predict',P,'my card has not arrived'],capture_output=True,text=True)
    if r.returncode!=0:
        bad+=1; print('UNLOADABLE after',cmd[1],d,r.stderr.strip(),flush=True)
left=[]
for root,dirs,files in os.walk(P):
    for x in dirs+files:
        if '.staging-' in x or '.trash-' in x or '.tmp.' in x or '.update-traces-' in x: left.append(os.path.join(root,x))
print('leftovers before a clean run:',len(left))
subprocess.run(ops()[0],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
left=[]
for root,dirs,files in os.walk(P):
    for x in dirs+files:
        if '.staging-' in x or '.trash-' in x or '.tmp.' in x or '.update-traces-' in x: left.append(os.path.join(root,x))
print(json.dumps({'runs':n,'killed':killed,'killed_by_op':dict(zip(['fit','update','rollback'],by)),'finished_before_kill':finished,'unloadable':bad,'leftovers_after_next_write':left}),flush=True)
