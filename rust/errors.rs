//! Every error the native module raises, in one place: the library's exception classes
//! (`cqrs_ddd_persistence_mongo.exceptions`) are bound once, so callers see one hierarchy
//! whichever backend is bound; a Rust panic becomes one of them instead of escaping as
//! pyo3's `PanicException` (a `BaseException`).
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::PyTypeInfo;

pyo3::import_exception!(cqrs_ddd_persistence_mongo.exceptions, InvalidDocument);
pyo3::import_exception!(cqrs_ddd_persistence_mongo.exceptions, InvalidSpecification);

/// Which library exception an entry point raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `InvalidDocument`: a document or its keys cannot be stored or read.
    Document,
    /// `InvalidSpecification`: a specification, ordering or projection is not valid.
    Specification,
}

impl ErrorKind {
    /// The library exception of this kind with `message`.
    pub fn error(self, message: String) -> PyErr {
        match self {
            ErrorKind::Document => InvalidDocument::new_err(message),
            ErrorKind::Specification => InvalidSpecification::new_err(message),
        }
    }
}

/// `InvalidDocument(message)`.
pub fn invalid_document(_py: Python<'_>, message: String) -> PyErr {
    ErrorKind::Document.error(message)
}

/// `InvalidSpecification(message)`.
pub fn invalid_specification(message: String) -> PyErr {
    ErrorKind::Specification.error(message)
}

/// Longest value text an error message shows, in characters (the pure twin's `SHOWN_LIMIT`).
pub const SHOWN_LIMIT: usize = 200;

/// `repr(value)` for an error message, as the pure twin's `shown` gives it: a `str`
/// subclass shown by its characters, at most `SHOWN_LIMIT` characters, and never an error
/// of its own (a value nested too deep to repr, or whose `__repr__` fails, is named by its
/// type).
pub fn shown(value: &Bound<'_, PyAny>) -> String {
    let text = if value.is_exact_instance_of::<PyString>() || !value.is_instance_of::<PyString>() {
        value.repr()
    } else {
        // a subclass's own __repr__/__str__ are not asked (pure: `str.__str__(value)`)
        let py = value.py();
        PyString::type_object(py).getattr("__str__").and_then(|f| f.call1((value,))).and_then(|s| s.repr())
    };
    match text.and_then(|t| t.to_str().map(str::to_owned)) {
        Ok(t) => clipped(t),
        Err(_) => {
            let name = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            format!("<unrepresentable {name}>")
        }
    }
}

/// `text` cut to `SHOWN_LIMIT` characters, the last three of them "...".
fn clipped(text: String) -> String {
    if text.chars().count() <= SHOWN_LIMIT {
        return text;
    }
    let mut cut: String = text.chars().take(SHOWN_LIMIT - 3).collect();
    cut.push_str("...");
    cut
}

/// The text a panic carried (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_owned()
    }
}

/// The message of a panic turned into a library error.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    format!(
        "internal error in the native module ({}); this is a bug, please report it with the input that caused it; \
         set CQRS_DDD_MONGO_PURE=1 to use the pure backend meanwhile",
        panic_text(payload)
    )
}

/// Runs an entry point's body; a panic inside becomes the library error of `kind`.
/// (Objects held by the body are released while unwinding, as on any early return.)
pub fn guarded<T>(kind: ErrorKind, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(kind.error(panic_message(payload.as_ref()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_keeps_short_text_and_cuts_long_text_by_characters() {
        assert_eq!(clipped("abc".into()), "abc");
        let exact: String = "é".repeat(SHOWN_LIMIT);
        assert_eq!(clipped(exact.clone()), exact);
        let cut = clipped("é".repeat(SHOWN_LIMIT + 1));
        assert_eq!(cut.chars().count(), SHOWN_LIMIT);
        assert!(cut.ends_with("é..."));
    }

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        let s: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_text(s.as_ref()), "boom");
        let s: Box<dyn Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_text(s.as_ref()), "bang");
        let s: Box<dyn Any + Send> = Box::new(7_u8);
        assert_eq!(panic_text(s.as_ref()), "no message");
    }

    #[test]
    fn panic_message_says_what_to_do() {
        let s: Box<dyn Any + Send> = Box::new("index out of bounds");
        let message = panic_message(s.as_ref());
        assert!(message.contains("index out of bounds"));
        assert!(message.contains("CQRS_DDD_MONGO_PURE=1"));
    }

    #[test]
    fn guarded_passes_results_through_and_catches_panics() {
        // no Python needed: the Ok path and the panic path before any PyErr is built
        let ok: PyResult<u8> = guarded(ErrorKind::Document, || Ok(3));
        assert_eq!(ok.ok(), Some(3));
        let caught = catch_unwind(|| guarded::<u8>(ErrorKind::Document, || panic!("inner")));
        assert!(caught.is_ok(), "guarded must not let the panic through");
    }
}
