//! Rendering fetched results through a resource's template. Pure apart from
//! `env("NAME")`, which reads only the variables `watch.toml` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

/// A template that does not compile or render: where, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {name}{}: {what}", .line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template (its file, or the resource).
    pub name: String,
    /// The line, when the engine knows it.
    pub line: Option<usize>,
    /// What is wrong, naming the expression at fault.
    pub what: String,
}

/// What one render sees.
pub struct Inputs<'a> {
    /// Names the template in errors (its file, or the resource).
    pub name: &'a str,
    /// The template's text.
    pub template: &'a str,
    /// The resource's own config's result, if it has one: its keys at the
    /// top level, and `result`.
    pub own: Option<&'a serde_json::Value>,
    /// The other configs' results, each under its name.
    pub named: Vec<(&'a str, &'a serde_json::Value)>,
    /// Values used where no result has the key.
    pub defaults: &'a serde_json::Value,
    /// The environment variables `env()` may read.
    pub allowed_env: &'a [String],
    /// The registry's services as last read, for `service()` and `services()`.
    pub services: &'a Services,
}

/// The registry as a render sees it: each service read so far (its live
/// instances as the API lists them), and the services' names once asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Services {
    /// Instances by service.
    pub instances: BTreeMap<String, serde_json::Value>,
    /// Every service's name, once a template called `services()`.
    pub names: Option<Vec<String>>,
}

/// What a render asked of the registry: the services it read, and whether
/// it listed them all. A service it read that `Services` lacked rendered as
/// empty; the caller fetches it and renders again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Services `service()` read.
    pub services: BTreeSet<String>,
    /// Whether `services()` was called.
    pub names: bool,
}

/// Fails on template syntax errors, so a bad template stops the agent at
/// start (or a SIGHUP changes nothing) rather than failing at the first change.
pub fn check_template(name: &str, template: &str) -> Result<(), TemplateError> {
    environment(&[])
        .template_from_named_str(name, template)
        .map(|_| ())
        .map_err(|e| describe(&e, name, template))
}

/// Renders the template. Undefined names are errors, so a version missing a
/// field never renders a half-empty file; the error names the template,
/// the line and what was missing.
pub fn render(inputs: &Inputs<'_>) -> Result<(String, Wanted), TemplateError> {
    let mut context: Vec<(String, Value)> = Vec::new();
    let mut top = |object: &serde_json::Value| {
        if let serde_json::Value::Object(map) = object {
            context.extend(map.iter().map(|(k, v)| (k.clone(), to_value(v))));
        }
    };
    top(inputs.defaults);
    if let Some(own) = inputs.own {
        top(own);
        context.push(("result".into(), to_value(own)));
    }
    for (name, result) in &inputs.named {
        context.push(((*name).to_owned(), to_value(result)));
    }
    let wanted = Arc::new(Mutex::new(Wanted::default()));
    let mut env = environment(inputs.allowed_env);
    registry_functions(&mut env, inputs.services, &wanted);
    // Later pairs win: a result's key over a default of the same name.
    let text = env
        .render_named_str(inputs.name, inputs.template, Value::from_pairs(context))
        .map_err(|e| describe(&e, inputs.name, inputs.template))?;
    let wanted = wanted.lock().map(|w| w.clone()).unwrap_or_default();
    Ok((text, wanted))
}

/// `service("api")`: the live instances (`instance_id`, `address`, `port`,
/// `meta`, ...), sorted by id, or an empty list; `services()`: the names.
fn registry_functions(env: &mut Environment<'static>, services: &Services, wanted: &Arc<Mutex<Wanted>>) {
    let known = services.instances.clone();
    let asked = wanted.clone();
    env.add_function("service", move |name: &str| -> Value {
        if let Ok(mut asked) = asked.lock() {
            asked.services.insert(name.to_owned());
        }
        known
            .get(name)
            .map_or_else(|| Value::from(Vec::<Value>::new()), to_value)
    });
    let names = services.names.clone().unwrap_or_default();
    let asked = wanted.clone();
    env.add_function("services", move || -> Value {
        if let Ok(mut asked) = asked.lock() {
            asked.names = true;
        }
        Value::from(names.iter().map(|n| Value::from(n.as_str())).collect::<Vec<_>>())
    });
}

/// "template <name>, line <n>: <what>", naming the undefined expression.
fn describe(error: &Error, name: &str, template: &str) -> TemplateError {
    let expression = error
        .range()
        .and_then(|range| template.get(range))
        .map(str::trim)
        .filter(|text| !text.is_empty());
    let what = match (error.kind(), expression) {
        (ErrorKind::UndefinedError, Some(expression)) => format!("undefined value `{expression}`"),
        (_, _) => match (error.detail(), expression) {
            (Some(detail), Some(expression)) => format!("{}: {detail} (in `{expression}`)", error.kind()),
            (Some(detail), None) => format!("{}: {detail}", error.kind()),
            (None, Some(expression)) => format!("{} (in `{expression}`)", error.kind()),
            (None, None) => error.kind().to_string(),
        },
    };
    TemplateError {
        name: name.to_owned(),
        line: error.line(),
        what,
    }
}

/// By hand rather than through serde: serde_json numbers may serialize as a
/// private wrapper (with `arbitrary_precision`), which templates would print.
fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_u64().map(Value::from))
            .unwrap_or_else(|| Value::from(n.as_f64().unwrap_or(f64::NAN))),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (k.clone(), to_value(v)))),
    }
}

fn environment(allowed_env: &[String]) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    let allowed = allowed_env.to_vec();
    env.add_function("env", move |name: &str| -> Result<Value, Error> {
        if !allowed.iter().any(|a| a == name) {
            let message = format!("env({name:?}) is not allowed: list {name:?} in watch.toml's `env`");
            return Err(Error::new(ErrorKind::InvalidOperation, message));
        }
        // Unset is undefined, so `env("X") | default("y")` works and a bare
        // `env("X")` fails naming it.
        Ok(std::env::var(name).map(Value::from).unwrap_or(Value::UNDEFINED))
    });
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static NO_SERVICES: Services = Services {
        instances: BTreeMap::new(),
        names: None,
    };

    fn text(inputs: &Inputs<'_>) -> Result<String, TemplateError> {
        render(inputs).map(|(text, _)| text)
    }

    fn inputs<'a>(template: &'a str, own: &'a serde_json::Value) -> Inputs<'a> {
        Inputs {
            name: "upstreams.tmpl",
            template,
            own: Some(own),
            named: Vec::new(),
            defaults: &serde_json::Value::Null,
            allowed_env: &[],
            services: &NO_SERVICES,
        }
    }

    #[test]
    fn services_render_their_instances_and_say_what_was_read() {
        let template = "{% for i in service('api') %}server {{ i.address }}:{{ i.port }};\n{% else %}server 127.0.0.1:1 down;\n{% endfor %}";
        let (empty, wanted) = render(&inputs(template, &serde_json::Value::Null)).unwrap();
        assert_eq!(empty, "server 127.0.0.1:1 down;\n");
        assert_eq!(wanted.services.iter().collect::<Vec<_>>(), ["api"]);
        let services = Services {
            instances: BTreeMap::from([(
                "api".to_owned(),
                json!([{"instance_id": "a", "address": "10.0.0.1", "port": 80}, {"instance_id": "b", "address": "10.0.0.2", "port": 81}]),
            )]),
            names: Some(vec!["api".into(), "web".into()]),
        };
        let with = Inputs {
            services: &services,
            ..inputs(template, &serde_json::Value::Null)
        };
        assert_eq!(text(&with).unwrap(), "server 10.0.0.1:80;\nserver 10.0.0.2:81;\n");
        let names = Inputs {
            services: &services,
            ..inputs("{{ services() | join(',') }}", &serde_json::Value::Null)
        };
        let (listed, wanted) = render(&names).unwrap();
        assert_eq!(listed, "api,web");
        assert!(wanted.names);
    }

    #[test]
    fn renders_the_result_as_context() {
        let template = "upstream app {\n{% for s in servers %}  server {{ s }};\n{% endfor %}}\n";
        let servers = json!({"servers": ["10.0.0.1:80", "10.0.0.2:80"]});
        let out = text(&inputs(template, &servers)).unwrap();
        assert_eq!(out, "upstream app {\n  server 10.0.0.1:80;\n  server 10.0.0.2:80;\n}\n");
        assert_eq!(text(&inputs("{{ result }}", &json!(5))).unwrap(), "5");
    }

    #[test]
    fn errors_name_the_template_the_line_and_what_is_missing() {
        let err = text(&inputs("ok\n{{ servers }}", &json!({}))).unwrap_err().to_string();
        assert!(err.starts_with("template upstreams.tmpl, line 2:"), "{err}");
        assert!(err.contains("`servers`"), "{err}");
        let err = text(&inputs("{% for s in sevrers %}{{ s }}{% endfor %}", &json!({})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sevrers") && err.contains("line 1"), "{err}");
        assert!(text(&inputs("{{ port + 1 }}", &json!({"port": "x"}))).is_err());
        let err = check_template("t.tmpl", "a\n{% for %}").unwrap_err().to_string();
        assert!(err.contains("template t.tmpl, line 2"), "{err}");
    }

    #[test]
    fn tojson_defaults_and_named_configs() {
        let own = json!({"servers": ["a:1"], "port": 8080});
        let flags = json!({"beta": true});
        let defaults = json!({"port": 80, "region": "eu"});
        let rendered = text(&Inputs {
            named: vec![("flags", &flags)],
            defaults: &defaults,
            ..inputs(
                "{{ servers | tojson }} {{ port }} {{ region }} {{ flags.beta | tojson }} {{ missing | default('d') }}",
                &own,
            )
        })
        .unwrap();
        assert_eq!(rendered, "[\"a:1\"] 8080 eu true d");
    }

    #[test]
    fn env_reads_only_listed_variables() {
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("VANE_RENDER_TEST_REGION", "eu-1");
            std::env::set_var("VANE_RENDER_TEST_SECRET", "hidden");
        }
        let allowed = [
            "VANE_RENDER_TEST_REGION".to_owned(),
            "VANE_RENDER_TEST_UNSET".to_owned(),
        ];
        let with = |template| Inputs {
            allowed_env: &allowed,
            ..inputs(template, &serde_json::Value::Null)
        };
        assert_eq!(text(&with("{{ env('VANE_RENDER_TEST_REGION') }}")).unwrap(), "eu-1");
        assert_eq!(
            text(&with("{{ env('VANE_RENDER_TEST_UNSET') | default('x') }}")).unwrap(),
            "x"
        );
        let err = text(&with("{{ env('VANE_RENDER_TEST_SECRET') }}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed") && !err.contains("hidden"), "{err}");
    }
}
