//! `$now`, `$millis`, `$toMillis` and `$fromMillis`, with XPath-style picture strings for output.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

use crate::error::Error;
use crate::eval::{Ctx, R, err};
use crate::functions::{format_integer_picture, num_arg, str_arg};
use crate::value::Val;

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
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn now_utc(ctx: &Ctx<'_>) -> DateTime<Utc> {
    match ctx.now.get() {
        Some(t) => t,
        None => {
            let t = Utc::now();
            ctx.now.set(Some(t));
            t
        }
    }
}

pub(crate) fn millis<'a>(ctx: &Ctx<'a>, _: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(Some(Val::Num(now_utc(ctx).timestamp_millis() as f64)))
}

pub(crate) fn now<'a>(ctx: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let ms = now_utc(ctx).timestamp_millis();
    format_millis(ms, str_arg(&args, 0), str_arg(&args, 1), pos).map(|s| Some(Val::string(s)))
}

pub(crate) fn from_millis<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(ms) = num_arg(&args, 0) else {
        return Ok(None);
    };
    format_millis(ms.trunc() as i64, str_arg(&args, 1), str_arg(&args, 2), pos)
        .map(|s| Some(Val::string(s)))
}

pub(crate) fn to_millis<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    if str_arg(&args, 1).is_some() {
        return Err(err(
            "D3136",
            pos,
            "Parsing timestamps with a picture string ($toMillis second argument) is not supported",
        ));
    }
    match parse_iso(s) {
        Some(ms) => Ok(Some(Val::Num(ms as f64))),
        None => Err(err(
            "D3110",
            pos,
            format!(
                "The argument of the toMillis function must be an ISO 8601 formatted timestamp. Given \"{s}\""
            ),
        )),
    }
}

/// Parses the ISO 8601 forms JSONata accepts; a timestamp without offset is UTC.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    let date = if s.len() == 4 {
        NaiveDate::from_ymd_opt(s.parse().ok()?, 1, 1)
    } else if s.len() == 7 {
        NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()
    } else {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    }?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

fn parse_tz(tz: &str, pos: usize) -> Result<FixedOffset, Error> {
    let bad = || {
        err(
            "D3135",
            pos,
            format!("Invalid timezone: \"{tz}\" (expected ±HHMM)"),
        )
    };
    let (sign, rest) = match tz.chars().next() {
        Some('+') => (1, &tz[1..]),
        Some('-') => (-1, &tz[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let h: i32 = digits[..2].parse().map_err(|_| bad())?;
    let m: i32 = digits[2..].parse().map_err(|_| bad())?;
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

fn format_millis(
    ms: i64,
    picture: Option<&str>,
    tz: Option<&str>,
    pos: usize,
) -> Result<String, Error> {
    let offset = match tz {
        Some(tz) => parse_tz(tz, pos)?,
        None => FixedOffset::east_opt(0).expect("zero offset"),
    };
    let t = offset
        .timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| err("D3137", pos, format!("Timestamp out of range: {ms}")))?;
    match picture {
        None if tz.is_none() => Ok(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
        None => format_picture(
            &t,
            "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]",
            pos,
        ),
        Some(p) => format_picture(&t, p, pos),
    }
}

fn name_case(name: &str, pres: &str) -> String {
    if pres.starts_with("Nn") {
        name.to_string()
    } else if pres.starts_with('N') {
        name.to_uppercase()
    } else {
        name.to_lowercase()
    }
}

fn format_tz(offset_secs: i32, pres: &str) -> String {
    let t_suffix = pres.ends_with('t');
    let pres = pres.trim_end_matches('t');
    if offset_secs == 0 && t_suffix {
        return "Z".into();
    }
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let abs = offset_secs.abs();
    let (h, m) = (abs / 3600, (abs % 3600) / 60);
    match pres {
        "0" | "1" if m == 0 => format!("{sign}{h}"),
        "01" if m == 0 => format!("{sign}{h:02}"),
        "0101" => format!("{sign}{h:02}{m:02}"),
        "1:01" | "0:01" => format!("{sign}{h}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}"),
    }
}

/// Formats a timestamp with an XPath `format-dateTime` picture (common subset).
fn format_picture(t: &DateTime<FixedOffset>, picture: &str, pos: usize) -> Result<String, Error> {
    let mut out = String::new();
    let chars: Vec<char> = picture.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' && chars.get(i + 1) == Some(&'[') {
            out.push('[');
            i += 2;
            continue;
        }
        if c == ']' && chars.get(i + 1) == Some(&']') {
            out.push(']');
            i += 2;
            continue;
        }
        if c != '[' {
            out.push(c);
            i += 1;
            continue;
        }
        let end = chars[i..].iter().position(|&c| c == ']').ok_or_else(|| {
            err(
                "D3135",
                pos,
                "No matching closing bracket ']' in date/time picture string",
            )
        })?;
        let marker: String = chars[i + 1..i + end]
            .iter()
            .filter(|c| !c.is_whitespace())
            .collect();
        i += end + 1;
        let mut mchars = marker.chars();
        let Some(component) = mchars.next() else {
            continue;
        };
        let rest: String = mchars.collect();
        let (pres, width) = match rest.split_once(',') {
            Some((p, w)) => (p.to_string(), Some(w.to_string())),
            None => (rest, None),
        };
        let (min_w, max_w) = match &width {
            Some(w) => {
                let (a, b) = w.split_once('-').unwrap_or((w, ""));
                (a.parse::<usize>().ok(), b.parse::<usize>().ok())
            }
            None => (None, None),
        };
        let numeric = |v: i64, default: &str| -> Result<String, Error> {
            let p = if pres.is_empty() {
                default
            } else {
                pres.as_str()
            };
            // Drop an ordinal/cardinal modifier (`1o`), which is not supported.
            let p = if p.len() > 1 {
                p.trim_end_matches(['o', 'c'])
            } else {
                p
            };
            let is_digits = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_digit() || c == '#' || c == ',');
            let mut s = if is_digits || matches!(p, "I" | "i" | "A" | "a") {
                format_integer_picture(v, p, pos)?
            } else {
                v.to_string()
            };
            if let Some(min) = min_w {
                while s.chars().count() < min {
                    s.insert(0, '0');
                }
            }
            if let Some(max) = max_w
                && s.chars().count() > max
            {
                s = s.chars().skip(s.chars().count() - max).collect();
            }
            Ok(s)
        };
        let named = |name: &str| -> String {
            let mut s = name_case(name, &pres);
            if let Some(max) = max_w {
                s = s.chars().take(max).collect();
            }
            s
        };
        let text = match component {
            'Y' => numeric(t.year() as i64, "1")?,
            'M' if pres.starts_with(['N', 'n']) => named(MONTHS[t.month0() as usize]),
            'M' => numeric(t.month() as i64, "1")?,
            'D' => numeric(t.day() as i64, "1")?,
            'd' => numeric(t.ordinal() as i64, "1")?,
            'F' if pres.is_empty() || pres.starts_with(['N', 'n']) => {
                let day = DAYS[t.weekday().num_days_from_monday() as usize];
                if pres.is_empty() {
                    day.to_lowercase()
                } else {
                    named(day)
                }
            }
            'F' => numeric(t.weekday().number_from_monday() as i64, "1")?,
            'W' => numeric(t.iso_week().week() as i64, "1")?,
            'X' => numeric(t.iso_week().year() as i64, "1")?,
            'w' => numeric(((t.day() as i64 - 1) / 7) + 1, "1")?,
            'H' => numeric(t.hour() as i64, "1")?,
            'h' => {
                let h = t.hour() % 12;
                numeric(if h == 0 { 12 } else { h } as i64, "1")?
            }
            'P' => {
                let s = if t.hour() < 12 { "am" } else { "pm" };
                if pres.starts_with('N') {
                    s.to_uppercase()
                } else {
                    s.to_string()
                }
            }
            'm' => numeric(t.minute() as i64, "01")?,
            's' => numeric(t.second() as i64, "01")?,
            'f' => {
                let digits = if pres.is_empty() {
                    3
                } else {
                    pres.chars().filter(|c| c.is_ascii_digit()).count().max(1)
                };
                let ms = t.timestamp_subsec_millis() as f64 / 1000.0;
                let s = format!("{ms:.digits$}");
                s.split_once('.')
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default()
            }
            'Z' => format_tz(
                t.offset().local_minus_utc(),
                if pres.is_empty() { "01:01" } else { &pres },
            ),
            'z' => format!("GMT{}", format_tz(t.offset().local_minus_utc(), "01:01")),
            'C' => "ISO".to_string(),
            'E' => "AD".to_string(),
            other => {
                return Err(err(
                    "D3132",
                    pos,
                    format!("Unknown component specifier {other} in date/time picture string"),
                ));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}
