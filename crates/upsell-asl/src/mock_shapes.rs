//! Checks a TestState mocked result against the AWS API response shape of the task's resource
//! (`fieldValidationMode` STRICT / PRESENT). The shapes come from botocore's service models,
//! generated into `mock_shapes.json` by `scripts/gen-mock-shapes.py` for the integrations the
//! project uses; a resource outside that list is not checked.

use crate::single_state::FieldValidationMode;
use serde_json::Value;
use std::sync::OnceLock;

fn catalogue() -> &'static Value {
    static SHAPES: OnceLock<Value> = OnceLock::new();
    SHAPES.get_or_init(|| {
        serde_json::from_str(include_str!("mock_shapes.json")).expect("mock_shapes.json is JSON")
    })
}

/// The botocore `service:Operation` a Task resource calls, when known.
fn operation(resource: &str) -> Option<String> {
    let rest = resource.strip_prefix("arn:aws:states:::")?;
    let (svc, action) = match rest.strip_prefix("aws-sdk:") {
        Some(sdk) => sdk.split_once(':')?,
        None => rest.split_once(':')?,
    };
    let action = action.split('.').next().unwrap_or(action);
    let (svc, action) = match (svc, action) {
        ("states" | "sfn", "startExecution") if rest.contains(".sync") => {
            ("stepfunctions", "describeExecution")
        }
        ("states" | "sfn", a) => ("stepfunctions", a),
        ("eventbridge", a) => ("events", a),
        (s, a) => (s, a),
    };
    let mut op = action.to_string();
    if let Some(f) = op.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    Some(format!("{svc}:{op}"))
}

/// `Err(message)` naming the first field that does not fit the shape.
pub fn validate(resource: &str, result: &Value, mode: FieldValidationMode) -> Result<(), String> {
    if mode == FieldValidationMode::None {
        return Ok(());
    }
    let Some(op) = operation(resource) else {
        return Ok(());
    };
    let cat = catalogue();
    let Some(shape) = cat["operations"].get(&op).and_then(Value::as_str) else {
        return Ok(());
    };
    // The optimised Lambda integration returns the function's JSON result as `Payload`.
    let any_payload = resource.starts_with("arn:aws:states:::lambda:invoke");
    check(
        cat,
        shape,
        "",
        result,
        mode == FieldValidationMode::Strict,
        any_payload,
    )
}

fn check(
    cat: &Value,
    shape: &str,
    field: &str,
    v: &Value,
    strict: bool,
    any_payload: bool,
) -> Result<(), String> {
    let s = &cat["shapes"][shape];
    let ty = s["type"].as_str().unwrap_or("");
    let fail = |what: &str| Err(format!("Field '{field}' {what}"));
    let bounds = |n: f64, min_msg: &str, max_msg: &str| -> Result<(), String> {
        if let Some(min) = s["min"].as_f64()
            && n < min
        {
            return Err(format!("Field '{field}' {min_msg}"));
        }
        if let Some(max) = s["max"].as_f64()
            && n > max
        {
            return Err(format!("Field '{field}' {max_msg}"));
        }
        Ok(())
    };
    let length = |n: usize| {
        bounds(
            n as f64,
            "is smaller than the minimum length",
            "exceeds the maximum length",
        )
    };
    match ty {
        "structure" => {
            let Some(obj) = v.as_object() else {
                return if field.is_empty() {
                    Err("Mocked result must be a JSON object".into())
                } else {
                    fail("must be an object")
                };
            };
            if strict {
                for r in s["required"].as_array().into_iter().flatten() {
                    let r = r.as_str().unwrap_or("");
                    if obj.get(r).is_none_or(Value::is_null) {
                        return Err(format!("Required field '{r}' is missing"));
                    }
                }
            }
            for (k, val) in obj {
                if val.is_null() || (any_payload && field.is_empty() && k == "Payload") {
                    continue;
                }
                if let Some(member) = s["members"].get(k).and_then(Value::as_str) {
                    check(cat, member, k, val, strict, false)?;
                }
            }
            Ok(())
        }
        "list" => {
            let Some(a) = v.as_array() else {
                return fail("must be an array");
            };
            length(a.len())?;
            let member = s["member"].as_str().unwrap_or("");
            a.iter()
                .filter(|x| !x.is_null())
                .try_for_each(|x| check(cat, member, field, x, strict, false))
        }
        "map" => {
            let Some(m) = v.as_object() else {
                return fail("must be an object");
            };
            let value = s["value"].as_str().unwrap_or("");
            m.values()
                .filter(|x| !x.is_null())
                .try_for_each(|x| check(cat, value, field, x, strict, false))
        }
        "string" | "blob" => match v.as_str() {
            Some(t) => length(t.chars().count()),
            None => fail("must be a string"),
        },
        "timestamp" => match v {
            Value::String(_) => Ok(()),
            _ => fail("must be a string"),
        },
        "boolean" => match v {
            Value::Bool(_) => Ok(()),
            _ => fail("must be a boolean"),
        },
        "integer" | "long" | "float" | "double" => match v.as_f64() {
            Some(n) => bounds(
                n,
                "is less than the minimum value",
                "exceeds the maximum value",
            ),
            None => fail("must be a number"),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_resources_to_operations() {
        assert_eq!(
            operation("arn:aws:states:::lambda:invoke").as_deref(),
            Some("lambda:Invoke")
        );
        assert_eq!(
            operation("arn:aws:states:::aws-sdk:sfn:startExecution").as_deref(),
            Some("stepfunctions:StartExecution")
        );
        assert_eq!(
            operation("arn:aws:states:::states:startExecution.sync:2").as_deref(),
            Some("stepfunctions:DescribeExecution")
        );
        assert_eq!(operation("arn:aws:lambda:us-east-1:1:function:f"), None);
    }

    #[test]
    fn strict_requires_fields_present_does_not() {
        let r = "arn:aws:states:::states:startExecution";
        assert_eq!(
            validate(r, &json!({}), FieldValidationMode::Strict),
            Err("Required field 'ExecutionArn' is missing".into())
        );
        assert_eq!(
            validate(r, &json!({}), FieldValidationMode::Present),
            Ok(())
        );
        assert_eq!(
            validate(r, &json!({"StartDate": 1}), FieldValidationMode::Present),
            Err("Field 'StartDate' must be a string".into())
        );
        assert_eq!(
            validate(r, &json!({"StartDate": 1}), FieldValidationMode::None),
            Ok(())
        );
    }

    #[test]
    fn lambda_payload_is_any_json() {
        let r = "arn:aws:states:::lambda:invoke";
        let ok = json!({"Payload": {"a": 1}, "StatusCode": 200});
        assert_eq!(validate(r, &ok, FieldValidationMode::Strict), Ok(()));
        assert_eq!(
            validate(
                r,
                &json!({"StatusCode": "200"}),
                FieldValidationMode::Strict
            ),
            Err("Field 'StatusCode' must be a number".into())
        );
    }
}
