//! `docs/openapi.yaml` against the running server: every operation in it is called on a
//! real salve (with the doc's own examples) and its answer validated against the doc's
//! schema (a small JSON Schema validator below: type, enum, required, properties,
//! additionalProperties, items, allOf, $ref, boolean schemas — what the doc uses), and
//! every route salve registers must be in the doc.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{API_BEARER, BEARER, SalveConfig, http_client};

const DOC: &str = include_str!("../../docs/openapi.yaml");
const ROUTES: &str = include_str!("../../src/http/mod.rs");

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => json!(text.parse::<f64>().expect("a YAML real")),
        Yaml::Integer(n) => json!(n),
        Yaml::String(text) => json!(text),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        other => panic!("key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect::<Map<String, Value>>(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML {other:?}"),
    }
}

fn doc() -> Value {
    let docs = YamlLoader::load_from_str(DOC).expect("docs/openapi.yaml is YAML");
    to_json(&docs[0])
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Every way `value` breaks `schema`, with the JSON path.
fn validate(doc: &Value, schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            problems.push(format!("{path}: present, but the schema forbids it"));
            return;
        }
        _ => {}
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("type {other}"),
        };
        if !names.iter().any(|name| type_matches(name, value)) {
            problems.push(format!("{path}: {value} is not {names:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} not in {allowed:?}"));
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(doc, part, value, path, problems);
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !object.contains_key(key) {
                problems.push(format!("{path}: required {key:?} missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => validate(doc, property, item, &format!("{path}.{key}"), problems),
                None => {
                    if let Some(extra) = schema.get("additionalProperties") {
                        validate(doc, extra, item, &format!("{path}.{key}"), problems);
                    }
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            validate(doc, items, item, &format!("{path}[{index}]"), problems);
        }
    }
}

/// The (path, method) pairs `src/http/mod.rs` registers with `.route("PATH", web::METHOD()`.
fn registered_routes() -> BTreeSet<(String, String)> {
    let route =
        regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*web::(get|post|put|delete|patch)\(\)"#)
            .unwrap();
    route
        .captures_iter(ROUTES)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect()
}

#[test]
fn every_route_salve_registers_is_in_the_openapi_doc() {
    let doc = doc();
    let routes = registered_routes();
    assert!(
        routes.len() >= 15,
        "the route scan found too little: {routes:?}"
    );
    let missing: Vec<String> = routes
        .iter()
        .filter(|(path, method)| doc["paths"][path][method].is_null())
        .map(|(path, method)| format!("{} {path}", method.to_uppercase()))
        .collect();
    assert!(missing.is_empty(), "docs/openapi.yaml lacks {missing:?}");
}

#[tokio::test]
async fn every_operation_answers_as_the_openapi_doc_says() {
    let doc = doc();
    let salve = SalveConfig::standard().start_with_shipped_recipes().await;
    // Something to list: incident 1, a dry-run plan on web1.
    salve
        .post_generic(crate::support::service_down_on_web1("nginx", 8080))
        .await;
    salve
        .wait_for_incidents("every incident planned", |all| {
            all.len() == 1 && all.iter().all(|i| i["state"] != "received")
        })
        .await;

    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            let mut url = path.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let parameter = resolve(&doc, parameter);
                if parameter["in"] == "path" {
                    let example = parameter["example"].to_string();
                    let example = example.trim_matches('"');
                    url = url.replace(
                        &format!("{{{}}}", parameter["name"].as_str().unwrap()),
                        example,
                    );
                }
            }
            let client = http_client();
            let mut request = match method.as_str() {
                "get" => client.get(format!("{}{url}", salve.base_url())),
                "post" => client.post(format!("{}{url}", salve.base_url())),
                other => panic!("method {other}"),
            };
            request = if path.starts_with("/hooks/") {
                request.header(BEARER.0, BEARER.1)
            } else {
                request.header(API_BEARER.0, API_BEARER.1)
            };
            if let Some(example) =
                operation.pointer("/requestBody/content/application~1json/example")
            {
                request = request.json(example);
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let body = response.text().await.unwrap();
            let what = format!("{} {url}", method.to_uppercase());
            let responses = operation["responses"].as_object().unwrap();
            let expected = operation["x-expect"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    responses
                        .keys()
                        .find(|k| k.starts_with('2'))
                        .expect("a 2xx")
                        .clone()
                });
            if status.to_string() != expected {
                problems.push(format!("{what}: {status} (expected {expected}): {body}"));
                continue;
            }
            let documented = resolve(&doc, &responses[&expected]);
            let media = content_type.split(';').next().unwrap().trim().to_owned();
            let content = documented["content"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            match content.get(&media) {
                None => problems.push(format!(
                    "{what}: answered {media:?}, the doc says {:?}",
                    content.keys().collect::<Vec<_>>()
                )),
                Some(described) => {
                    if let Some(schema) = described.get("schema") {
                        let value: Value = serde_json::from_str(&body)
                            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
                        validate(&doc, schema, &value, &what, &mut problems);
                    }
                }
            }
            checked += 1;
        }
    }
    // The documented error shape, on a bad query string.
    let (status, body) = {
        let response = http_client()
            .get(format!("{}/api/v1/incidents?state=bogus", salve.base_url()))
            .header(API_BEARER.0, API_BEARER.1)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 400);
    let error_schema = json!({ "$ref": "#/components/schemas/Error" });
    validate(
        &doc,
        &error_schema,
        &body,
        "GET ?state=bogus",
        &mut problems,
    );

    assert!(problems.is_empty(), "{problems:#?}");
    assert!(checked >= 19, "only {checked} operations checked");
}
