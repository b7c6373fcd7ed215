"""One rollout plan's event story, start to end: the debug build on a fresh SQLite
store, a plan of 10 % and 50 % with 1 s bakes and a 1 s watch after release,
20 devices fetching throughout; prints the release log and the plan.
  cargo build && python3 loadtest/rollout_story.py
"""
import json, os, subprocess, tempfile, time, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))
VANE = os.environ.get('VANE_BIN', os.path.join(HERE, '..', 'target', 'debug', 'vane'))
d = tempfile.mkdtemp(); tok = 'story-token-0123456789abcdef'; port = 18191
env = dict(os.environ, VANE_SERVER__LISTEN=f'127.0.0.1:{port}', VANE_STORE__URL=f'sqlite://{d}/v.db?mode=rwc', VANE_AUTH__ADMIN_TOKENS='ops=' + tok, VANE_LOG__LEVEL='warn')
srv = subprocess.Popen([VANE, 'serve'], cwd=os.path.join(HERE, '..'), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f'http://127.0.0.1:{port}'
for _ in range(100):
    try: urllib.request.urlopen(base + '/readyz'); break
    except Exception: time.sleep(0.1)
def req(path, body=None, method=None):
    r = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(), method=method, headers={'Content-Type': 'application/json', 'Authorization': 'Bearer ' + tok})
    return json.load(urllib.request.urlopen(r))
req('/api/v1/configs', {'id': 'app'})
v1 = req('/api/v1/configs/app/versions', {'lang': 'starlark', 'source': "return 'old'"})['code_id']
req('/api/v1/configs/app/release', {'code_id': v1})
v2 = req('/api/v1/configs/app/versions', {'lang': 'starlark', 'source': "return 'new'"})['code_id']
plan = req('/api/v1/configs/app/plans', {'code_id': v2, 'steps': [{'percentage': 10, 'bake_s': 1}, {'percentage': 50, 'bake_s': 1}], 'bake_after_release_s': 1})
while req(f"/api/v1/configs/app/plans/{plan['id']}")['state'] == 'active':
    for i in range(20):
        urllib.request.urlopen(urllib.request.Request(base + '/api/v1/configs/app/evaluate', data=json.dumps({'meta': {'device_id': f'd{i}'}}).encode(), headers={'Content-Type': 'application/json'}))
    time.sleep(0.1)
final = req(f"/api/v1/configs/app/plans/{plan['id']}")
t0 = None
for e in reversed(req('/api/v1/configs/app/events')):
    t0 = t0 or e['created_at']
    gray = e['to'].get('gray')
    print(f"+{(e['created_at']-t0)/1000:5.2f} s  rev {e['revision']:2}  {e['kind']:<13} by {e['actor']:<8} "
          f"release={str((e['to'].get('release') or {}).get('code_id'))[:8]:<8} gray={(gray['percentage'] if gray else '-')!s:<3} "
          f"{json.dumps(e.get('detail')) if e.get('detail') else ''}")
print(f"plan {final['id']}: {final['state']}, applied {final['applied']}/{len(final['steps'])}, reason: {final['reason']}, last gate: {json.dumps(final['gate'])}")
srv.terminate(); srv.wait()
