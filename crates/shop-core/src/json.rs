//! Reading request bodies field by field, so that every error names the exact
//! field at fault (`items[1].quantity`), unknown fields are refused, and
//! numbers that are not integers (floats, strings) never pass as money.

use serde_json::{Map, Value};

use crate::http::ApiError;

/// Parses a body as JSON; 400 `invalid_json` otherwise.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::new(400, "invalid_json", format!("body is not valid JSON: {error}")))
}

/// A JSON object being read, with its path for error messages.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// The top-level object of a body; only `accepted` member names are allowed.
    pub fn of_body(value: &'a Value, accepted: &[&str]) -> Result<Fields<'a>, ApiError> {
        Fields::at(value, String::new(), accepted)
    }

    fn at(value: &'a Value, path: String, accepted: &[&str]) -> Result<Fields<'a>, ApiError> {
        let Value::Object(map) = value else {
            let what = if path.is_empty() { "body" } else { path.as_str() };
            return Err(ApiError::validation(what, format!("{what} must be a JSON object")));
        };
        let fields = Fields { map, path };
        if let Some(unknown) = map.keys().find(|name| !accepted.contains(&name.as_str())) {
            let field = fields.path_of(unknown);
            return Err(ApiError::validation(&field, format!("unknown field {field}")));
        }
        Ok(fields)
    }

    /// The full path of a member, e.g. `items[0].quantity`.
    pub fn path_of(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_string() } else { format!("{}.{name}", self.path) }
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|value| !value.is_null())
    }

    /// A present, non-null member or a 400 naming it.
    fn present(&self, name: &str) -> Result<&'a Value, ApiError> {
        match self.map.get(name) {
            Some(value) if !value.is_null() => Ok(value),
            _ => Err(ApiError::validation(self.path_of(name), format!("{} is required", self.path_of(name)))),
        }
    }

    /// An integer within `min..=max`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<i64, ApiError> {
        match self.present(name)?.as_i64() {
            Some(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(ApiError::validation(
                self.path_of(name),
                format!("{} must be an integer from {min} to {max}", self.path_of(name)),
            )),
        }
    }

    pub fn optional_integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        if self.has(name) { self.integer(name, min, max).map(Some) } else { Ok(None) }
    }

    /// A string of `min_chars..=max_chars` characters.
    pub fn text(&self, name: &str, min_chars: usize, max_chars: usize) -> Result<&'a str, ApiError> {
        let field = self.path_of(name);
        let Some(text) = self.present(name)?.as_str() else {
            return Err(ApiError::validation(&field, format!("{field} must be a string")));
        };
        let chars = text.chars().count();
        if chars < min_chars || chars > max_chars {
            return Err(ApiError::validation(
                &field,
                format!("{field} must have {min_chars} to {max_chars} characters"),
            ));
        }
        Ok(text)
    }

    /// Absent or null gives None; otherwise as [`Fields::text`].
    pub fn optional_text(&self, name: &str, min_chars: usize, max_chars: usize) -> Result<Option<&'a str>, ApiError> {
        if self.has(name) { self.text(name, min_chars, max_chars).map(Some) } else { Ok(None) }
    }

    /// An ISO 4217 currency code: three uppercase ASCII letters.
    pub fn currency(&self, name: &str) -> Result<&'a str, ApiError> {
        let code = self.text(name, 3, 3)?;
        if !crate::money::is_currency_code(code) {
            return Err(ApiError::validation(
                self.path_of(name),
                format!("{} must be three uppercase letters (ISO 4217)", self.path_of(name)),
            ));
        }
        Ok(code)
    }

    /// An identifier of 1 to 64 characters from `[A-Za-z0-9_-]`.
    pub fn identifier(&self, name: &str) -> Result<&'a str, ApiError> {
        let id = self.text(name, 1, 64)?;
        if !is_identifier(id) {
            return Err(ApiError::validation(
                self.path_of(name),
                format!("{} may only contain letters, digits, '_' and '-'", self.path_of(name)),
            ));
        }
        Ok(id)
    }

    /// An array of objects with `min_len..=max_len` elements, each allowed only
    /// the `accepted` members.
    pub fn objects(
        &self,
        name: &str,
        min_len: usize,
        max_len: usize,
        accepted: &[&str],
    ) -> Result<Vec<Fields<'a>>, ApiError> {
        let field = self.path_of(name);
        let Some(elements) = self.present(name)?.as_array() else {
            return Err(ApiError::validation(&field, format!("{field} must be an array")));
        };
        if elements.len() < min_len || elements.len() > max_len {
            return Err(ApiError::validation(
                &field,
                format!("{field} must have {min_len} to {max_len} elements"),
            ));
        }
        elements
            .iter()
            .enumerate()
            .map(|(index, element)| Fields::at(element, format!("{field}[{index}]"), accepted))
            .collect()
    }
}

/// 1 to 64 characters from `[A-Za-z0-9_-]`: product ids and path parameters.
pub fn is_identifier(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_nested_fields() {
        let body = json!({"items": [{"q": 1}, {"q": 1.5}]});
        let fields = Fields::of_body(&body, &["items"]).unwrap();
        let items = fields.objects("items", 1, 5, &["q"]).unwrap();
        assert_eq!(items[0].integer("q", 1, 10).unwrap(), 1);
        let error = items[1].integer("q", 1, 10).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("items[1].q"));
    }

    #[test]
    fn unknown_members_are_refused_by_name() {
        let body = json!({"items": [{"q": 1, "price": 5}]});
        let fields = Fields::of_body(&body, &["items"]).unwrap();
        let error = fields.objects("items", 1, 5, &["q"]).err().unwrap();
        assert_eq!(error.field.as_deref(), Some("items[0].price"));
        let top = json!({"extra": true});
        assert_eq!(Fields::of_body(&top, &["items"]).err().unwrap().field.as_deref(), Some("extra"));
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        let body = json!({"name": "ééé"});
        let fields = Fields::of_body(&body, &["name"]).unwrap();
        assert_eq!(fields.text("name", 1, 3).unwrap(), "ééé");
        assert!(fields.text("name", 1, 2).is_err());
    }

    #[test]
    fn identifiers_allow_only_the_safe_alphabet() {
        assert!(is_identifier("sku-1_A"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a/b"));
        assert!(is_identifier(&"x".repeat(64)));
        assert!(!is_identifier(&"x".repeat(65)));
    }
}
