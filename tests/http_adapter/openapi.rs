//! `docs/openapi.json` as the tests use it: operations looked up by id, and a
//! validator for the subset of JSON Schema the document uses (`$ref`, `type`,
//! `required`, `properties`, `additionalProperties: false`, `items`, `enum`,
//! `minimum`). Every operation a test sends is recorded, so the suite can
//! check that it exercised each documented one.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

/// The parsed document.
pub struct Spec {
    pub doc: Value,
    exercised: Mutex<BTreeSet<String>>,
}

/// One documented operation.
pub struct Operation<'a> {
    pub id: String,
    pub method: String,
    pub template: String,
    pub value: &'a Value,
}

impl Spec {
    pub fn load() -> Spec {
        let path = crate::harness::workspace().join("docs/openapi.json");
        let text = std::fs::read_to_string(&path).expect("docs/openapi.json");
        let doc: Value = serde_json::from_str(&text).expect("docs/openapi.json is JSON");
        Spec {
            doc,
            exercised: Mutex::new(BTreeSet::new()),
        }
    }

    /// Every operation in the document.
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let mut out = Vec::new();
        let paths = self.doc["paths"].as_object().expect("paths");
        for (template, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {template} has no operationId"));
                out.push(Operation {
                    id: id.to_string(),
                    method: method.to_uppercase(),
                    template: template.clone(),
                    value: op,
                });
            }
        }
        out
    }

    pub fn operation(&self, id: &str) -> Operation<'_> {
        self.operations()
            .into_iter()
            .find(|op| op.id == id)
            .unwrap_or_else(|| panic!("docs/openapi.json has no operation {id}"))
    }

    pub fn record(&self, id: &str) {
        self.exercised.lock().unwrap().insert(id.to_string());
    }

    pub fn exercised(&self) -> BTreeSet<String> {
        self.exercised.lock().unwrap().clone()
    }

    /// A schema by name from `components.schemas`.
    pub fn schema(&self, name: &str) -> &Value {
        let schema = &self.doc["components"]["schemas"][name];
        assert!(!schema.is_null(), "no schema {name}");
        schema
    }

    /// Checks `value` against `schema`; the error names where it differs.
    pub fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        self.check(schema, value, "$")
    }

    fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .ok_or_else(|| format!("unsupported $ref {reference}"))?;
            return self.check(self.schema(name), value, at);
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                other => return Err(format!("bad `type` in schema: {other}")),
            };
            if !allowed.iter().any(|t| type_matches(t, value)) {
                return Err(format!("{at}: expected {allowed:?}, got {value}"));
            }
        }
        if let Some(choices) = schema.get("enum").and_then(Value::as_array)
            && !choices.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {choices:?}"));
        }
        if let (Some(minimum), Some(number)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) && number < minimum
        {
            return Err(format!("{at}: {number} is below {minimum}"));
        }
        if let Some(object) = value.as_object() {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    return Err(format!("{at}: missing required `{name}`"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, item) in object {
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => self.check(property, item, &format!("{at}.{name}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return Err(format!("{at}: unexpected property `{name}`"));
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
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
        _ => false,
    }
}

/// Whether a concrete path fits a template such as `/v1/plugins/{name}`.
pub fn path_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}
