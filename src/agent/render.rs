//! Rendering a fetched result through a resource's template. Pure.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior, Value};

/// Fails on template syntax errors, so a bad template stops the agent at
/// start rather than at the first change.
pub fn check_template(template: &str) -> Result<(), String> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| format!("template: {e}"))
}

/// Renders `template` with the result as its context: an object's keys at
/// the top level, and the whole result as `result`. Undefined names are
/// errors, so a version missing a field never renders a half-empty file.
pub fn render(template: &str, result: &serde_json::Value) -> Result<String, String> {
    let mut context: Vec<(String, Value)> = match result {
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        _ => Vec::new(),
    };
    context.push(("result".into(), to_value(result)));
    environment()
        .render_str(template, Value::from_pairs(context))
        .map_err(|e| format!("render: {e}"))
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

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_result_as_context() {
        let template = "upstream app {\n{% for s in servers %}  server {{ s }};\n{% endfor %}}\n";
        let out = render(template, &json!({"servers": ["10.0.0.1:80", "10.0.0.2:80"]})).unwrap();
        assert_eq!(out, "upstream app {\n  server 10.0.0.1:80;\n  server 10.0.0.2:80;\n}\n");
        assert_eq!(render("{{ result }}", &json!(5)).unwrap(), "5");
    }

    #[test]
    fn missing_fields_and_bad_data_are_errors() {
        assert!(render("{{ servers }}", &json!({})).is_err());
        assert!(render("{{ port + 1 }}", &json!({"port": "x"})).is_err());
        assert!(check_template("{% for %}").is_err());
    }
}
