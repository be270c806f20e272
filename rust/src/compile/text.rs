//! Schema JSON text -> `serde_json::Value`, refusing what `serde_json` would quietly resolve:
//! a key repeated in one object. serde_json keeps the last value, so `{"type": "string",
//! "type": "integer"}` compiled as an integer schema with no word said; JSON leaves the
//! meaning of such text open (other parsers keep the first), so the schema is refused, naming
//! the key, its object's JSON pointer and the key's byte offset.

use crate::error::{escape_pointer_token, SchemaError};
use serde_json::Value;

/// Parse `text` as a schema (or any JSON the compiler reads: a registry entry, a rules
/// overlay). `what` names the input in messages ("the schema", "the registered schema").
pub fn parse_schema_text(text: &[u8], what: &str) -> Result<Value, SchemaError> {
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| SchemaError::new("", format!("{what} is not valid JSON: {e}")))?;
    // The crate's own parser refuses repeated keys and otherwise accepts exactly what
    // serde_json accepts (a property test in json.rs checks that), so a second pass over
    // text serde_json took only fails here for a repeated key.
    if let Err(e) = crate::json::parse(text) {
        let offset = e.offset.unwrap_or(0);
        // The offset is where the repeated key's string literal starts.
        let key = serde_json::Deserializer::from_slice(text.get(offset..).unwrap_or_default())
            .into_iter::<String>()
            .next()
            .and_then(Result::ok);
        return Err(match key {
            Some(key) => SchemaError::new(
                format!("{}/{}", e.pointer, escape_pointer_token(&key)),
                format!(
                    "{what} repeats the key {key:?} in one object (the repeat at byte {offset}); \
                     JSON leaves the meaning of a repeated key open, so it is refused rather \
                     than keeping one of the values"
                ),
            ),
            None => SchemaError::new(
                e.pointer,
                format!("{what} is not valid JSON at byte {offset}: {}", e.message),
            ),
        });
    }
    Ok(value)
}
