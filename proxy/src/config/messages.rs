//! Turning toml and serde errors into messages for people: file, line, section, and a "did you mean"
//! when an unknown key is close to a known one.

use std::path::Path;

use super::ConfigError;
pub(super) fn describe_toml_error(error: &toml::de::Error, text: &str, source: &Path) -> ConfigError {
    let at = error.span().map(|span| span.start).unwrap_or(0);
    let line = text[..at.min(text.len())].matches('\n').count() + 1;
    let section = section_at(text, at);
    let message = error.message();
    let detail = match unknown_field(message) {
        Some((key, expected)) => {
            let mut detail = format!("unknown key '{key}' in {section}");
            if let Some(close) = closest(key, &expected) {
                detail.push_str(&format!(" (did you mean '{close}'?)"));
            } else if !expected.is_empty() {
                detail.push_str(&format!(" (known keys: {})", expected.join(", ")));
            }
            detail
        }
        None => format!("{} in {section}", message.trim_end()),
    };
    ConfigError(format!("{} line {line}: {detail}", source.display()))
}

/// The `[table]` header in force at byte `at`, for messages.
fn section_at(text: &str, at: usize) -> String {
    text[..at.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find_map(|line| {
            // `[[stream]]` heads an array of tables; any other `[[` starts a value (a nested array).
            if let Some(rest) = line.strip_prefix("[[") {
                let name = rest.split("]]").next().unwrap_or(rest).trim();
                let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                return is_name.then(|| format!("[[{name}]]"));
            }
            line.starts_with('[')
                .then(|| line.split(']').next().unwrap_or(line).to_owned() + "]")
        })
        .unwrap_or_else(|| "the top level".to_owned())
}

/// Picks apart serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are
/// no fields").
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((key, expected))
}

/// The known key nearest to `key`, if it is near enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_only_suggests_near_misses() {
        assert_eq!(closest("timout", &["timeout", "fail_timeout"]), Some("timeout"));
        assert_eq!(closest("banana", &["timeout", "port"]), None);
    }
}
