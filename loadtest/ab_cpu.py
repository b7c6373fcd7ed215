"""A/B of two vane binaries by the CPU their own processes (the server and
its workers, stopped workers included) spend per request, so the load
generator's share of the two cores does not move the figure: (b) Starlark
with fixed params (a memo hit, the HTTP path alone), (a) varying params
(through a worker) and (c) JavaScript, varying; then the held-out corpus
with rich params: heldout.star (h), its memo hit (hm), nested.star (n),
bucket.star (k), bigparams.star with its
catalog (g) and heldout.js (hj). Alternates the binaries
ROUNDS times (default 3); wrk -t1 -c32, 5 s per row. A binary may be a
script that sets the server's environment and execs vane.
  python3 loadtest/ab_cpu.py BASE_BIN BASE_TREE NEW_BIN NEW_TREE
"""
import subprocess,time,os,json,sys,re,tempfile,urllib.request
HERE=os.path.dirname(os.path.abspath(__file__))
def ticks(pids):
    t=0
    for i,p in enumerate(pids):
        try:
            f=open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()
            t+=int(f[11])+int(f[12])
            # The server's reaped children: workers stopped during the row.
            if i==0: t+=int(f[13])+int(f[14])
        except FileNotFoundError: pass
    return t
def family(pid):
    out=subprocess.run(['pgrep','-P',str(pid)],capture_output=True,text=True).stdout.split()
    return [pid]+[int(x) for x in out]
def req(url,body,token=None):
    r=urllib.request.Request(url,data=json.dumps(body).encode(),headers={'Content-Type':'application/json',**({'Authorization':'Bearer '+token} if token else {})})
    return json.load(urllib.request.urlopen(r))
# The held-out corpus (rich.lua params): its Starlark shapes, the memo hit
# and JavaScript.
CORPUS=[('heldout','starlark','heldout.star'),('nested','starlark','nested.star'),
        ('bucket','starlark','bucket.star'),('bigparams','starlark','bigparams.star'),
        ('heldoutjs','javascript','heldout.js')]
ROWS=[('b','fixed.lua','star',{}),('a','varying.lua','star',{}),('c','varying.lua','js',{}),
      ('h','rich.lua','heldout',{}),('hm','rich.lua','heldout',{'FIXED':'1'}),('n','rich.lua','nested',{}),
      ('k','rich.lua','bucket',{}),('g','rich.lua','bigparams',{'BIG':'1'}),('hj','rich.lua','heldoutjs',{})]
def bench(binary,cwd,port):
    d=tempfile.mkdtemp(); tok='bench-token-0123456789abcdef'
    env=dict(os.environ,VANE_SERVER__LISTEN=f'127.0.0.1:{port}',VANE_STORE__URL=f'sqlite://{d}/l.db?mode=rwc',VANE_AUTH__ADMIN_TOKENS='b='+tok,VANE_LOG__LEVEL='warn')
    srv=subprocess.Popen([binary,'serve'],cwd=cwd,env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    base=f'http://127.0.0.1:{port}'
    for _ in range(100):
        try: urllib.request.urlopen(base+'/readyz'); break
        except Exception: time.sleep(0.1)
    api=base+'/api/v1/configs'
    req(api,{'id':'star'},tok)
    code=req(api+'/star/versions',{'lang':'starlark','source':open(os.path.join(HERE,'scripts/config60.star')).read()},tok)['code_id']
    req(api+'/star/release',{'code_id':code},tok)
    req(api,{'id':'js'},tok)
    code=req(api+'/js/versions',{'lang':'javascript','source':open(os.path.join(HERE,'scripts/config60.js')).read()},tok)['code_id']
    req(api+'/js/release',{'code_id':code},tok)
    for name,lang,file in CORPUS:
        req(api,{'id':name},tok)
        code=req(api+f'/{name}/versions',{'lang':lang,'source':open(os.path.join(HERE,'scripts',file)).read()},tok)['code_id']
        req(api+f'/{name}/release',{'code_id':code},tok)
    res={}
    for name,script,config,extra in ROWS:
        url=base+'/config/'+config
        env=dict(os.environ,**extra)
        subprocess.run(['wrk','-t1','-c32','-d2s','-s',os.path.join(HERE,'wrk',script),url],capture_output=True,env=env)
        pids=family(srv.pid); t0=ticks(pids)
        out=subprocess.run(['wrk','-t1','-c32','-d5s','-s',os.path.join(HERE,'wrk',script),url],capture_output=True,text=True,env=env).stdout
        after=family(srv.pid); t1=ticks(after)
        n=int(re.search(r'(\d+) requests in',out).group(1))
        # CPU µs per request, requests/s, worker processes at the end.
        res[name]=(round((t1-t0)*1e6/os.sysconf('SC_CLK_TCK')/n,1),round(n/5),len(after)-1)
    srv.terminate(); srv.wait()
    return res
# base binary, its tree (for its config.toml), new binary, its tree
bins=[('base',sys.argv[1],sys.argv[2]),('new',sys.argv[3],sys.argv[4])]
for i in range(int(os.environ.get('ROUNDS','3'))):
    for name,b,cwd in bins:
        r=bench(b,cwd,19100+i)
        print(name, r, flush=True)
