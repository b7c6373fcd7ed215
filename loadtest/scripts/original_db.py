"""The Go service's tables with N configs of realistic rows, as SQL on stdout.

Each config has three versions (Starlark or JavaScript, alternately), rules
on iphone and android versions and a parameter schema; one in four is in a
gray release, one in ten inactive; every config has two test cases on its
release and five reports. One config in a hundred has a version whose rule
Vane cannot read, and its release goes with it: the import lists both.
"""

import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def q(value):
    if value is None:
        return "NULL"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


print("""
CREATE TABLE config (config_id VARCHAR(128) PRIMARY KEY, code_release VARCHAR(64), code_unittest VARCHAR(64),
  code_gray VARCHAR(64), percentage INT NOT NULL DEFAULT 0, status VARCHAR(16) NOT NULL DEFAULT 'valid',
  secret VARCHAR(64) NOT NULL);
CREATE TABLE code (id INT AUTO_INCREMENT PRIMARY KEY, code_id VARCHAR(64) NOT NULL UNIQUE, lang VARCHAR(16) NOT NULL,
  rules TEXT, params TEXT, code TEXT NOT NULL, is_broken TINYINT(1) NOT NULL DEFAULT 0, err_count INT NOT NULL DEFAULT 0);
CREATE TABLE unittest (test_id VARCHAR(64) PRIMARY KEY, input TEXT, output TEXT, code_id VARCHAR(64));
CREATE TABLE error_report (id INT AUTO_INCREMENT PRIMARY KEY, `time` DATETIME NOT NULL, message TEXT NOT NULL,
  code_ref INT NOT NULL);
""")

rules = json.dumps([
    {"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]},
    {"platform": "android", "rules": [[{"field": "version", "compare": ">", "value": "200"}],
                                      [{"field": "version", "compare": "=", "value": "150"}]]},
])
bad_rules = json.dumps([{"platform": "iphone", "rules": [[{"field": "version", "compare": "~=", "value": "1"}]]}])
params = json.dumps([{"name": "region", "type": "string"}, {"name": "level", "type": "int"}])
starlark = 'if p["level"] > 3:\n    return {"region": p["region"], "tier": "gold", "v": %d}\nreturn encode({"v": %d})'
javascript = 'if (p.level > 3) { return {region: p.region, tier: "gold", v: %d}; }\nreturn {v: %d};'

code_row = 0
for c in range(n):
    config_id = f"app-{c:05d}.banner"
    ids = []
    for v in range(3):
        code_row += 1
        code_id = f"{c:05d}{v:02d}" + "%08x" % (c * 7919 + v)
        lang = "starlark" if (c + v) % 2 == 0 else "javascript"
        source = (starlark if lang == "starlark" else javascript) % (v, v)
        broken = 1 if v == 0 and c % 7 == 0 else 0
        version_rules = bad_rules if v == 2 and c % 100 == 0 else rules
        print(f"INSERT INTO code (id, code_id, lang, rules, params, code, is_broken, err_count) VALUES "
              f"({code_row}, {q(code_id)}, {q(lang)}, {q(version_rules)}, {q(params)}, {q(source)}, {broken}, {broken * 40});")
        ids.append((code_row, code_id))
    release = ids[2][1]
    gray = ids[1][1] if c % 4 == 0 else None
    status = "invalid" if c % 10 == 9 else "valid"
    print(f"INSERT INTO config VALUES ({q(config_id)}, {q(release)}, {q(ids[0][1])}, {q(gray)}, "
          f"{20 if gray else 0}, {q(status)}, {q('%032x' % (c * 104729))});")
    for t in range(2):
        level = 5 if t == 0 else 1
        out = {"region": "eu", "tier": "gold", "v": 2} if level > 3 else '{"v":2}'
        print(f"INSERT INTO unittest VALUES ({q(f'{c}-{t}')}, {q(json.dumps({'region': 'eu', 'level': level}))}, "
              f"{q(json.dumps(out))}, {q(release)});")
    for r in range(5):
        print(f"INSERT INTO error_report (`time`, message, code_ref) VALUES "
              f"('2026-0{1 + r}-1{r} 08:30:00', {q(f'parse failure {r}')}, {ids[r % 3][0]});")
