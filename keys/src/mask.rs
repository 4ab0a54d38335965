//! Shape-keeping masks of clear field values.

use std::net::IpAddr;

use serde_json::Value;

const REDACTED: &str = "[redacted]";

/// Masks a field's clear JSON text according to its category, writing JSON text to `out`.
///
/// | category | input | output |
/// |---|---|---|
/// | `email` | `"jane.doe@example.com"` | `"j***@example.com"` |
/// | `phone` | `"+33 6 12 34 56 78"` | `"+** * ** ** ** 78"` (last 2 digits kept, separators kept) |
/// | `name` | `"Jane Doe"` | `"J. D."` |
/// | `handle` | `"@janedoe"` | `"@j***"` |
/// | `ip` | `"203.0.113.42"` | `"203.0.113.0"` (IPv6: the /48 is kept) |
/// | `location` | `{"lat":48.8566,"lon":2.3522}` | `{"lat":48.9,"lon":2.4}`; a string gives `"***"` |
/// | `date` | `"1990-04-12"` | `"1990-**-**"` |
///
/// `address`, `free_text`, any other category, any value that does not fit
/// its category (including non-strings for string categories and invalid
/// JSON) give `"[redacted]"`. Never panics; always writes valid JSON.
pub fn mask_into(category: &str, value_json: &[u8], out: &mut Vec<u8>) {
    let masked = match category {
        "location" => return mask_location(value_json, out),
        "email" | "phone" | "name" | "handle" | "ip" | "date" => {
            match serde_json::from_slice::<String>(value_json) {
                Ok(s) => match category {
                    "email" => mask_email(&s),
                    "phone" => mask_phone(&s),
                    "name" => mask_name(&s),
                    "handle" => mask_handle(&s),
                    "ip" => mask_ip(&s),
                    _ => mask_date(&s),
                },
                Err(_) => None,
            }
        }
        _ => None,
    };
    write_json_string(masked.as_deref().unwrap_or(REDACTED), out);
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing to a Vec cannot fail; keep the output valid regardless.
        out.extend_from_slice(b"\"[redacted]\"");
    }
}

fn mask_email(s: &str) -> Option<String> {
    let (local, domain) = s.trim().rsplit_once('@')?;
    let first = local.chars().next()?;
    if domain.is_empty() {
        return None;
    }
    Some(format!("{first}***@{domain}"))
}

fn is_phone_separator(c: char) -> bool {
    matches!(c, ' ' | '+' | '-' | '.' | '(' | ')' | '/')
}

fn mask_phone(s: &str) -> Option<String> {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    // Keep the last two digits only when there are enough digits that this
    // does not reveal most of the number.
    let keep_from = if digits >= 6 { digits - 2 } else { digits };
    let mut seen = 0;
    let masked = s
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen > keep_from {
                    c
                } else {
                    '*'
                }
            } else if is_phone_separator(c) {
                c
            } else {
                '*'
            }
        })
        .collect();
    Some(masked)
}

fn mask_name(s: &str) -> Option<String> {
    let initials: Vec<String> = s
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{c}."))
        .collect();
    if initials.is_empty() {
        None
    } else {
        Some(initials.join(" "))
    }
}

fn mask_handle(s: &str) -> Option<String> {
    let s = s.trim();
    let (at, rest) = match s.strip_prefix('@') {
        Some(rest) => ("@", rest),
        None => ("", s),
    };
    match rest.chars().next() {
        Some(c) => Some(format!("{at}{c}***")),
        None if !at.is_empty() => Some("@***".to_owned()),
        None => None,
    }
}

fn mask_ip(s: &str) -> Option<String> {
    match s.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            Some(std::net::Ipv6Addr::new(seg[0], seg[1], seg[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

fn mask_date(s: &str) -> Option<String> {
    let b = s.trim().as_bytes();
    let year = b.get(..4)?;
    if !year.iter().all(u8::is_ascii_digit) || b.get(4) != Some(&b'-') {
        return None;
    }
    let year = std::str::from_utf8(year).ok()?;
    Some(format!("{year}-**-**"))
}

fn round1(x: f64) -> Option<f64> {
    let r = (x * 10.0).round() / 10.0;
    r.is_finite().then_some(r)
}

fn mask_location(value_json: &[u8], out: &mut Vec<u8>) {
    let masked = match serde_json::from_slice::<Value>(value_json) {
        Ok(Value::String(_)) => Value::String("***".to_owned()),
        Ok(Value::Object(obj)) => {
            let lat = obj.get("lat").and_then(Value::as_f64).and_then(round1);
            let lon = obj.get("lon").and_then(Value::as_f64).and_then(round1);
            match (lat, lon) {
                (Some(lat), Some(lon)) => serde_json::json!({ "lat": lat, "lon": lon }),
                _ => Value::String(REDACTED.to_owned()),
            }
        }
        _ => Value::String(REDACTED.to_owned()),
    };
    if serde_json::to_writer(&mut *out, &masked).is_err() {
        out.extend_from_slice(b"\"[redacted]\"");
    }
}
