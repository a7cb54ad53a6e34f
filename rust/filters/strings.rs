//! String operators (contains, startswith, endswith, like, regex and their i-/not_
//! forms): the user's text is escaped (or, for regex, must compile) and matched as a
//! `$regex` with the operator's `$options`.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::ops::Pattern;
use super::support::*;
use super::Leaf;

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' | '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => {
            out.push('\\');
            out.push(c);
        }
        '\0' => out.push_str("\\x00"),
        _ => out.push(c),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn like_to_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push('^');
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            push_escaped(&mut out, chars[i + 1]);
            i += 2;
            continue;
        }
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            _ => push_escaped(&mut out, c),
        }
        i += 1;
    }
    out.push_str("\\z");
    out
}

fn regex_dict<'py>(py: Python<'py>, pattern: &str, options: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "$regex"), pattern)?;
    if !options.is_empty() {
        d.set_item(intern!(py, "$options"), options)?;
    }
    Ok(d)
}

/// A regex pattern given by the user: it must compile with `re` (MongoDB's PCRE accepts
/// what `re` accepts for the operators we emit).
fn checked_regex(py: Python<'_>, text_obj: &Bound<'_, PyString>, leaf: &Leaf<'_, '_>) -> PyResult<()> {
    let compile = cached(py, &RE_COMPILE, "re", "compile")?;
    let Err(e) = compile.call1((text_obj,)) else {
        return Ok(());
    };
    let re_error = cached(py, &RE_ERROR, "re", "error")?;
    if e.is_instance(py, &re_error) {
        let msg = e.value(py).str()?.to_string();
        let shown = repr_str(py, text_obj.to_str()?);
        return Err(spec_error(py, leaf.path, format!("invalid regular expression {shown}: {msg}")));
    }
    Err(e)
}

pub(super) fn compile<'py>(
    py: Python<'py>,
    leaf: &Leaf<'_, 'py>,
    pattern: Pattern,
    options: &str,
    negated: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let text_obj = need_str(py, leaf.name, &leaf.val, leaf.path)?;
    let text = text_obj.to_str()?;
    let regex = match pattern {
        Pattern::Regex => {
            checked_regex(py, text_obj, leaf)?;
            text.to_owned()
        }
        Pattern::Like => like_to_regex(text),
        Pattern::Contains => escape(text),
        Pattern::StartsWith => format!("^{}", escape(text)),
        Pattern::EndsWith => format!("{}\\z", escape(text)),
    };
    let out = PyDict::new(py);
    out.set_item(leaf.key, regex_dict(py, &regex, options)?)?;
    if negated {
        wrap(py, intern!(py, "$nor"), vec![out])
    } else {
        Ok(out)
    }
}
