"""Publish-to-file and publish-to-nginx-serving times of `vane watch`: the
release binaries, a real nginx as the agent's exec child, loopback backends.
Needs nginx and `cargo build --release`.
  python3 loadtest/watch_timing.py DEBOUNCE_MS ROUNDS
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request, http.server, threading, signal
HERE = os.path.dirname(os.path.abspath(__file__))
VANE = os.environ.get('VANE_BIN', os.path.join(HERE, '..', 'target', 'release', 'vane'))
deb, rounds = int(sys.argv[1]), int(sys.argv[2])
def free():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def backend(name):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header('Content-Length', str(len(name))); self.end_headers(); self.wfile.write(name.encode())
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]
d = tempfile.mkdtemp(); port = free(); tok = 'bench-token-0123456789abcdef'
env = dict(os.environ, VANE_SERVER__LISTEN=f'127.0.0.1:{port}', VANE_STORE__URL=f'sqlite://{d}/v.db?mode=rwc', VANE_AUTH__ADMIN_TOKENS='b=' + tok, VANE_LOG__LEVEL='warn')
srv = subprocess.Popen([VANE, 'serve'], cwd=os.path.join(HERE, '..'), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f'http://127.0.0.1:{port}'
for _ in range(100):
    try: urllib.request.urlopen(base + '/readyz'); break
    except Exception: time.sleep(0.1)
def req(path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={'Content-Type': 'application/json', 'Authorization': 'Bearer ' + tok})
    return json.load(urllib.request.urlopen(r))
secret = req('/api/v1/configs', {'id': 'edge'})['secret']
def version(servers):
    return req('/api/v1/configs/edge/versions', {'lang': 'starlark', 'source': 'return ' + json.dumps({'servers': servers})})['code_id']
def release(code):
    req('/api/v1/configs/edge/release', {'code_id': code, 'force': True})
b1, b2 = backend('one'), backend('two')
release(version([f'127.0.0.1:{b1}']))
nport = free()
tmpl = f'''worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  upstream app {{
{{% for s in servers %}}    server {{{{ s }}}};
{{% endfor %}}  }}
  server {{ listen 127.0.0.1:{nport}; location / {{ proxy_pass http://app; }} }}
}}
'''
open(f'{d}/watch.toml', 'w').write(f'''[exec]
command = ["nginx", "-p", "{d}", "-e", "{d}/error.log", "-c", "{d}/nginx.conf", "-g", "daemon off;"]
[[resource]]
name = "nginx"
server = "{base}"
config_id = "edge"
secret = "{secret}"
template = \'\'\'
{tmpl}\'\'\'
destination = "{d}/nginx.conf"
check = "nginx -t -q -p {d} -e {d}/error.log -c {{}}"
debounce_ms = {deb}
''')
t0 = time.time()
agent = subprocess.Popen([VANE, 'watch', '--config', f'{d}/watch.toml'], stdout=subprocess.DEVNULL, stderr=open(f'{d}/agent.log', 'w'))
def serving():
    try: return urllib.request.urlopen(f'http://127.0.0.1:{nport}/', timeout=1).read().decode()
    except Exception: return ''
while serving() != 'one':
    time.sleep(0.002)
print(f'start to nginx serving: {time.time() - t0:.3f} s')
to_file, to_serve = [], []
for i in range(rounds):
    name, b = (('two', b2) if i % 2 == 0 else ('one', b1))
    code = version([f'127.0.0.1:{b}'])
    before = open(f'{d}/nginx.conf').read()
    t = time.time(); release(code); t_rel = time.time() - t
    while open(f'{d}/nginx.conf').read() == before: time.sleep(0.001)
    to_file.append(time.time() - t)
    while serving() != name: time.sleep(0.001)
    to_serve.append(time.time() - t)
    time.sleep(0.3)
ms = lambda xs: ', '.join(f'{x*1000:.0f}' for x in sorted(xs))
print(f'debounce {deb} ms, {rounds} publishes (release call itself included)')
print(f'  publish to file (ms): {ms(to_file)}')
print(f'  publish to nginx serving the new upstream (ms): {ms(to_serve)}')
agent.send_signal(signal.SIGTERM); print('agent exit', agent.wait(timeout=10)); srv.terminate(); srv.wait()
