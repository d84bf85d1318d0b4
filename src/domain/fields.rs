use std::collections::BTreeMap;

/// A short text people type and read, such as a name: trimmed, not empty (else `empty`),
/// at most `max` characters and none of them control characters.
pub fn parse_name(raw: &str, max: usize, empty: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(empty.to_owned());
    }
    if name.chars().count() > max || name.chars().any(char::is_control) {
        return Err(format!("Use at most {max} printable characters."));
    }
    Ok(name.to_owned())
}

/// Beside a client secret field after a refused save.
pub const SECRET_AGAIN: &str = "Nothing was saved. Paste the client secret again: Portico never sends a secret back to the page.";

/// Messages keyed by form field name, shown beside each field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &'static str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    /// Keeps the first message of a field: it is usually the most basic problem.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }

    /// Records the error of `result`, if any, and passes its value on.
    pub fn check<T>(&mut self, field: &'static str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.add(field, message)).ok()
    }

    /// For a refused form with a client secret typed into `field`: the page it comes back
    /// on never holds a secret, so it says, beside the emptied field, to paste it again.
    pub fn ask_secret_again(&mut self, field: &'static str, typed: bool) {
        if typed && !self.is_empty() {
            self.add(field, SECRET_AGAIN);
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}
