//! Rendering Hugging Face chat templates (Jinja) into prompt text.
//!
//! Mirrors `transformers`' `apply_chat_template`: a sandboxed Jinja
//! environment with `trim_blocks` and `lstrip_blocks`, loop controls
//! (`{% break %}`), the `raise_exception(msg)` and `strftime_now(fmt)` globals,
//! a `tojson` filter that prints like Python's `json.dumps` (`", "` and
//! `": "` separators, non-ASCII kept), and Python string/dict methods
//! (`.strip()`, `.startswith()`, `.items()`, …) through `minijinja-contrib`'s
//! pycompat layer. Variables: `messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`, and `tools = none`.
//!
//! Guarantees: rendering is bounded in steps — every template gets a fuel
//! budget and a recursion limit, so `{% for i in range(10**9) %}` or a
//! self-calling macro returns an error naming the limit instead of hanging or
//! overflowing the stack. Errors carry the template's own message (e.g. from
//! `raise_exception`). Not bounded: the size of strings a template builds —
//! minijinja has no memory limit, so `{% set b = a ~ a %}` repeated doubles a
//! string per step. Templates therefore count as trusted configuration (the
//! model file's or `--chat-template`'s, chosen by the operator); requests
//! supply only messages, which real templates render in linear size.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("chat template does not parse: {0}")]
    Syntax(String),
    #[error("chat template failed: {0}")]
    Render(String),
}

/// Instruction budget per render: far above any real conversation, far below a hang.
/// Fuzzing (`cfg(fuzzing)`, set by cargo-fuzz) uses a smaller budget so that
/// a hostile template costs milliseconds, not seconds, per execution; the
/// mechanism that cuts it off is the same.
const FUEL: u64 = if cfg!(fuzzing) { 200_000 } else { 20_000_000 };
/// Nesting depth of macro calls / includes.
const RECURSION_LIMIT: usize = 64;

/// Renders `template` for `messages` the way `transformers` does.
pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ChatTemplateError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_filter("length", length);
    env.add_test("iterable", is_iterable);
    let template = generation_blocks_as_plain_blocks(template);
    env.add_template("chat_template", &template).map_err(|e| ChatTemplateError::Syntax(describe(&e)))?;
    let tmpl = env.get_template("chat_template").map_err(|e| ChatTemplateError::Syntax(describe(&e)))?;
    let ctx = minijinja::context! {
        messages => Value::from_serialize(messages),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
        tools => Value::from(()),
    };
    tmpl.render(ctx).map_err(|e| ChatTemplateError::Render(describe_render_error(&e)))
}

/// A render error, saying which of memwall's limits stopped it, if one did.
fn describe_render_error(e: &Error) -> String {
    let limit = if e.kind() == ErrorKind::OutOfFuel {
        format!("the template ran more than {FUEL} steps, memwall's limit for one render (a loop that does not end?)")
    } else if e.to_string().contains("recursion limit exceeded") {
        format!("the template nests more than {RECURSION_LIMIT} calls, memwall's limit (a macro that calls itself?)")
    } else {
        return describe(e);
    };
    format!("{limit}: {}", describe(e))
}

/// Jinja2's `length`: an undefined value has length 0 (minijinja refuses it).
fn length(v: Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        Error::new(ErrorKind::InvalidOperation, format!("cannot calculate length of value of type {}", v.kind()))
    })
}

/// Jinja2's `iterable` test: `none` is not iterable (minijinja says it is),
/// so `tools is iterable and tools | length > 0` works with `tools = none`.
fn is_iterable(v: Value) -> bool {
    !v.is_none() && !v.is_undefined() && v.try_iter().is_ok()
}

/// transformers' `{% generation %}…{% endgeneration %}` extension only marks
/// the assistant's tokens for training masks and renders its body unchanged;
/// minijinja has no such tag, so it becomes `{% if true %}…{% endif %}` with
/// the same whitespace control.
fn generation_blocks_as_plain_blocks(template: &str) -> String {
    static TAGS: std::sync::OnceLock<[(fancy_regex::Regex, &str); 2]> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let tag = |name: &str| fancy_regex::Regex::new(&format!(r"\{{%(-?)\s*{name}\s*(-?)%\}}")).expect("valid regex");
        [(tag("generation"), "{%${1} if true ${2}%}"), (tag("endgeneration"), "{%${1} endif ${2}%}")]
    });
    let mut out = template.to_string();
    for (re, with) in tags {
        out = re.replace_all(&out, *with).into_owned();
    }
    out
}

/// The error and its causes on one line.
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `json.dumps(value, ensure_ascii=False, indent=indent)`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // Accept (and ignore) Python's other keyword arguments.
    for k in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(k)?;
    }
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let res = match indent {
        Some(n) => {
            let pad = vec![b' '; n.min(64)];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PyFormatter)),
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(String::from_utf8_lossy(&out).into_owned()))
}

/// serde_json formatter with Python's default `", "` / `": "` separators.
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// Python's `datetime.now().strftime(fmt)` (UTC) for the common directives.
fn strftime_now(fmt: String) -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    strftime(secs, &fmt)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Formats seconds since the Unix epoch (UTC).
pub(crate) fn strftime(secs: i64, fmt: &str) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (h, mi, s) = (tod / 3600, tod % 3600 / 60, tod % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = doy_mar - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let no_pad = spec == Some('-');
        if no_pad {
            spec = chars.next();
        }
        let num = |v: i64, w: usize| {
            if no_pad {
                v.to_string()
            } else {
                format!("{v:0w$}")
            }
        };
        match spec {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&num(y.rem_euclid(100), 2)),
            Some('m') => out.push_str(&num(m, 2)),
            Some('d') => out.push_str(&num(d, 2)),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('j') => out.push_str(&num(yday, 3)),
            Some('H') => out.push_str(&num(h, 2)),
            Some('I') => out.push_str(&num(if h % 12 == 0 { 12 } else { h % 12 }, 2)),
            Some('M') => out.push_str(&num(mi, 2)),
            Some('S') => out.push_str(&num(s, 2)),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        assert_eq!(strftime(0, "%Y-%m-%d %H:%M:%S %A"), "1970-01-01 00:00:00 Thursday");
        // 2024-07-26 12:34:56 UTC, a Friday.
        assert_eq!(strftime(1_721_997_296, "%d %b %Y %a %-d %j"), "26 Jul 2024 Fri 26 208");
        assert_eq!(strftime(951_782_400, "%Y-%m-%d"), "2000-02-29");
    }

    #[test]
    fn tojson_matches_python() {
        let out = render("{{ {'a': [1, 'é'], 'b': none} | tojson }}|{{ [1] | tojson(indent=2) }}", &[], false, "", "")
            .unwrap();
        assert_eq!(out, "{\"a\": [1, \"é\"], \"b\": null}|[\n  1\n]");
    }
}
