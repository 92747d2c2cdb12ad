//! Functions AWS Step Functions adds to JSONata: `$partition`, `$range`, `$hash`,
//! `$random([seed])`, `$uuid` and `$parse`. Enabled by `Env::with_step_functions_extensions`.

use md5::Digest as _;
use rand::{Rng as _, SeedableRng as _};

use crate::eval::{Ctx, R, err};
use crate::functions::{Builtin, arg, from_owned, num_arg, str_arg};
use crate::value::Val;

pub(crate) static FUNCTIONS: [Builtin; 6] = [
    Builtin::new("partition", "<an:a>", partition),
    Builtin::new("range", "<nnn:a<n>>", range),
    Builtin::new("hash", "<ss:s>", hash),
    Builtin::new("random", "<n?:n>", random),
    Builtin::new("uuid", "<:s>", uuid),
    Builtin::new("parse", "<s:x>", parse),
];

fn positive_int(v: Option<f64>, what: &str, pos: usize) -> Result<usize, crate::Error> {
    match v {
        Some(n) if n.fract() == 0.0 && n >= 1.0 => Ok(n as usize),
        _ => Err(err(
            "D3040",
            pos,
            format!("The {what} must be a positive integer"),
        )),
    }
}

/// `$partition(array, size)`: chunks of `size` items (the last may be shorter).
fn partition<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(a) = arg(&args, 0) else {
        return Ok(None);
    };
    let size = positive_int(num_arg(&args, 1), "chunk size of $partition", pos)?;
    let items = a.items();
    let chunks = items.chunks(size).map(|c| Val::array(c.to_vec())).collect();
    Ok(Some(Val::array(chunks)))
}

/// `$range(start, end, step)`: numbers from `start` up to and including `end`.
fn range<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let (Some(start), Some(end), Some(step)) =
        (num_arg(&args, 0), num_arg(&args, 1), num_arg(&args, 2))
    else {
        return Ok(None);
    };
    if step == 0.0 || !step.is_finite() {
        return Err(err(
            "D3040",
            pos,
            "The step of $range must be a non-zero number",
        ));
    }
    let mut out = Vec::new();
    let mut v = start;
    while (step > 0.0 && v <= end) || (step < 0.0 && v >= end) {
        out.push(Val::Num(v));
        if out.len() > 1_000_000 {
            return Err(err(
                "D2014",
                pos,
                "The $range function would produce more than 1000000 items",
            ));
        }
        v += step;
    }
    Ok(Some(Val::seq(out)))
}

/// `$hash(data, algorithm)`: hex digest of the UTF-8 bytes.
fn hash<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let (Some(data), Some(alg)) = (str_arg(&args, 0), str_arg(&args, 1)) else {
        return Ok(None);
    };
    let bytes = data.as_bytes();
    let digest: Vec<u8> = match alg {
        "MD5" => md5::Md5::digest(bytes).to_vec(),
        "SHA-1" => sha1::Sha1::digest(bytes).to_vec(),
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(err(
                "D3040",
                pos,
                format!(
                    "Unsupported hash algorithm \"{other}\"; expected one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
                ),
            ));
        }
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(Val::string(hex)))
}

/// `$random([seed])`: a number in [0, 1); the same seed gives the same number.
fn random<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    let n = match num_arg(&args, 0) {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed as i64 as u64).random::<f64>(),
        None => rand::rng().random::<f64>(),
    };
    Ok(Some(Val::Num(n)))
}

fn uuid<'a>(_: &Ctx<'a>, _: Vec<Option<Val<'a>>>, _: usize) -> R<'a> {
    Ok(Some(Val::string(uuid::Uuid::new_v4().to_string())))
}

/// `$parse(json)`: the value a JSON text denotes.
fn parse<'a>(_: &Ctx<'a>, args: Vec<Option<Val<'a>>>, pos: usize) -> R<'a> {
    let Some(s) = str_arg(&args, 0) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| {
        err(
            "D3040",
            pos,
            format!("The argument of $parse is not valid JSON: {e}"),
        )
    })?;
    Ok(Some(from_owned(v)))
}
