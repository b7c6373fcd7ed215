//! Criterion benchmarks of the engines and the domain functions on the
//! request path. `cargo bench --bench engine`
//! (`cargo bench --bench engine -- served` for the served record alone).
/// The allocator the worker runs with, so allocation costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use vane::domain::Meta;
use vane::domain::gray::in_gray;
use vane::domain::health::Prefixes;
use vane::domain::params::{ParamSpec, prepare};
use vane::domain::rules::{RawPlatformRules, allows, validate};
use vane::engine::Engine;
use vane::engine::Limits;
use vane::engine::javascript::JsEngine;
use vane::engine::starlark::StarlarkEngine;
use vane::service::reports::served::ServedRecord;

const STARLARK: &str = include_str!("../loadtest/scripts/config60.star");
const JAVASCRIPT: &str = include_str!("../loadtest/scripts/config60.js");

fn params(i: i64) -> serde_json::Value {
    json!({"score": i % 100, "platform": "iphone", "version_code": 100 + i % 80, "seq": i})
}

fn engines(c: &mut Criterion) {
    let limits = Limits::default();
    let mut starlark = StarlarkEngine::new(16);
    let mut i = 0;
    c.bench_function("starlark config60 run", |b| {
        b.iter(|| {
            i += 1;
            starlark.run("c", STARLARK, &params(i), &limits).unwrap()
        })
    });
    let mut js = JsEngine::new(16);
    c.bench_function("javascript config60 run", |b| {
        b.iter(|| {
            i += 1;
            js.run("c", JAVASCRIPT, &params(i), &limits).unwrap()
        })
    });
}

fn domain(c: &mut Criterion) {
    let raw: Vec<RawPlatformRules> = serde_json::from_value(json!([
        {"platform": "*", "rules": [[{"field": "device_id", "compare": "not_in", "value": ["a", "b", "c"]}]]},
        {"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "100"},
                                          {"field": "app_version", "compare": ">=", "value": "2.1"}]]}
    ]))
    .unwrap();
    let rules = validate(raw).unwrap();
    let meta = Meta {
        platform: "iphone".into(),
        version: Some(120),
        device_id: "device-42".into(),
        app_version: Some("2.3.1".into()),
    };
    c.bench_function("rules allows", |b| b.iter(|| allows(&rules, &meta)));
    c.bench_function("gray bucket", |b| {
        b.iter(|| in_gray("device-42", "0123456789abcdef", 30))
    });
    let specs: Vec<ParamSpec> = serde_json::from_value(json!([
        {"name": "score", "type": "int"}, {"name": "platform", "type": "string"},
        {"name": "region", "type": "string", "default": "eu"}
    ]))
    .unwrap();
    c.bench_function("params prepare", |b| b.iter(|| prepare(&specs, params(7)).unwrap()));
}

/// What every fetch adds: recording its client's network in the version's
/// served sketch. A network seen before costs a lookup; a new one an insert.
fn served(c: &mut Criterion) {
    let record = ServedRecord::new(600, 1_000_000);
    let prefixes = Prefixes::default();
    let now = 1_700_000_000_000;
    let regular = prefixes.network("203.0.113.7".parse().unwrap());
    record.record("v1", &regular, now);
    c.bench_function("served record, known network", |b| {
        b.iter(|| record.record("v1", &prefixes.network("203.0.113.7".parse().unwrap()), now))
    });
    let mut i = 0u32;
    c.bench_function("served record, new network", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let ip = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 72));
            record.record("v1", &prefixes.network(ip.into()), now)
        })
    });
}

/// The params `loadtest/wrk/rich.lua` sends, for user `i` (with the
/// 64-entry catalog bigparams.star reads).
fn rich(i: i64) -> serde_json::Value {
    let tags = ["news", "sport", "music", "tech", "food", "travel", "kids", "art"];
    let cats = ["books", "games", "music", "tools"];
    let catalog: Vec<_> = (1..=64)
        .map(|n: usize| {
            json!({"id": format!("item-{n}"), "price": (n * 37) % 120, "score": (n * 53) % 100,
                   "cat": cats[n % 4], "tags": [tags[n % 8], tags[(n * 3) % 8]]})
        })
        .collect();
    json!({"user_id": format!("u{i}"), "score": i % 100, "platform": "iphone", "version_code": 100 + i % 80,
           "region": "eu", "tags": ["news", "sport", "music", "tech", "food", "travel"],
           "prefs": {"lang": "en", "dark": true, "budget": 60, "email": false,
                     "notify": {"email": true, "push": false}},
           "catalog": catalog})
}

/// The held-out corpus (loadtest/scripts), each run by the engine alone
/// and as a worker's whole turn: the request frame read, the run, the
/// reply frame written (`cargo bench --bench engine -- corpus`).
fn corpus(c: &mut Criterion) {
    use std::borrow::Cow;
    use vane::domain::Lang;
    use vane::engine::Engines;
    use vane::engine::protocol::{Frame, Params, Request};
    use vane::engine::worker::handle_frame;
    let scripts = [
        (
            "heldout",
            Lang::Starlark,
            include_str!("../loadtest/scripts/heldout.star"),
        ),
        (
            "bucket",
            Lang::Starlark,
            include_str!("../loadtest/scripts/bucket.star"),
        ),
        ("rules", Lang::Starlark, include_str!("../loadtest/scripts/rules.star")),
        (
            "nested",
            Lang::Starlark,
            include_str!("../loadtest/scripts/nested.star"),
        ),
        (
            "bigparams",
            Lang::Starlark,
            include_str!("../loadtest/scripts/bigparams.star"),
        ),
        (
            "strings",
            Lang::Starlark,
            include_str!("../loadtest/scripts/strings.star"),
        ),
        (
            "comprehension",
            Lang::Starlark,
            include_str!("../loadtest/scripts/comprehension.star"),
        ),
        (
            "heldout.js",
            Lang::Javascript,
            include_str!("../loadtest/scripts/heldout.js"),
        ),
    ];
    // The params alone onto a Starlark heap, as a worker reads them.
    let text = serde_json::to_string(&rich(7)).unwrap();
    c.bench_function("corpus bigparams params onto the heap", |b| {
        b.iter(|| {
            starlark::environment::Module::with_temp_heap(|module| {
                vane::engine::star_params::alloc(module.heap(), &text)
                    .map(|_| ())
                    .unwrap()
            })
        })
    });
    let limits = Limits::default();
    let mut engines = Engines::new(16);
    for (name, lang, source) in scripts {
        // Only bigparams reads the catalog; the others get the six keys.
        let params = |i| {
            let mut p = rich(i);
            if name != "bigparams" {
                p.as_object_mut().unwrap().remove("catalog");
            }
            p
        };
        let mut i = 0;
        c.bench_function(&format!("corpus {name} run"), |b| {
            b.iter(|| {
                i += 1;
                engines.get(lang).run(name, source, &params(i), &limits).unwrap()
            })
        });
        let run = |source: Option<&'static str>, params| Request::Run {
            code_id: Cow::Borrowed(name),
            recompile: false,
            lang,
            source: source.map(Cow::Borrowed),
            params,
            limits,
        };
        // As the server writes it: the params after the JSON.
        let frames: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let params = Params::Value(Cow::Owned(params(i)));
                Frame::write_split(&run(None, Params::Follow), &params, false).unwrap()[4..].to_vec()
            })
            .collect();
        // The worker compiles the code once, as a first run brings it; every
        // turn after runs it (a turn answered `need_source` measures nothing).
        let first = run(Some(source), Params::Value(Cow::Owned(params(0))));
        let (reply, _) = handle_frame(&mut engines, &serde_json::to_vec(&first).unwrap());
        assert!(reply.starts_with(br#"{"ok":"#), "{}", String::from_utf8_lossy(&reply));
        let (reply, _) = handle_frame(&mut engines, &frames[1]);
        assert!(reply.starts_with(br#"{"ok":"#), "{}", String::from_utf8_lossy(&reply));
        let mut n = 0;
        c.bench_function(&format!("corpus {name} worker turn"), |b| {
            b.iter(|| {
                n += 1;
                handle_frame(&mut engines, &frames[n % frames.len()])
            })
        });
        // The same turns with the params inside the JSON (as a server of an
        // earlier release writes them), for the difference in one run.
        let inline: Vec<Vec<u8>> = (0..1000)
            .map(|i| serde_json::to_vec(&run(None, Params::Value(Cow::Owned(params(i))))).unwrap())
            .collect();
        c.bench_function(&format!("corpus {name} worker turn, params inline"), |b| {
            b.iter(|| {
                n += 1;
                handle_frame(&mut engines, &inline[n % inline.len()])
            })
        });
    }
}

criterion_group!(benches, engines, domain, served, corpus);
criterion_main!(benches);
