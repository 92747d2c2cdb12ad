//! A shared secret kept in Secrets Manager (the webhook's HMAC key): its current value and,
//! during a rotation, the previous one, read with `GetSecretValue` by version stage. Callers
//! read it once per container and again when their cache is stale; this module only fetches.

use aws_sdk_secretsmanager::Client;
use upsell_core::ports::PortError;

use crate::error::{error_code, port_error};

/// Stage of the value senders should sign with.
pub const CURRENT_STAGE: &str = "AWSCURRENT";
/// Stage of the value before the last `PutSecretValue` (still accepted during a rotation).
pub const PREVIOUS_STAGE: &str = "AWSPREVIOUS";

/// The values of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValues {
    /// `AWSCURRENT`.
    pub current: String,
    /// `AWSPREVIOUS`, if the secret has one.
    pub previous: Option<String>,
}

/// One secret (name or ARN) in Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerSecret {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSecret {
    /// The secret `secret_id` (name or ARN).
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSecret {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The value at `stage`; `None` when the secret has no version at that stage.
    pub async fn value_at(&self, stage: &str) -> Result<Option<String>, PortError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e)
                if stage != CURRENT_STAGE
                    && error_code(&e) == Some("ResourceNotFoundException") =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(port_error(
                    &format!(
                        "Secrets Manager GetSecretValue ({}, {stage})",
                        self.secret_id
                    ),
                    e,
                ));
            }
        };
        match out.secret_string {
            Some(text) => Ok(Some(text)),
            None => Err(PortError::Invalid(format!(
                "secret {} ({stage}) holds binary data; a text value is expected",
                self.secret_id
            ))),
        }
    }

    /// The current value (required) and the previous one (if any).
    pub async fn values(&self) -> Result<SecretValues, PortError> {
        let current = self.value_at(CURRENT_STAGE).await?.ok_or_else(|| {
            PortError::NotFound(format!("secret {} has no current value", self.secret_id))
        })?;
        let previous = self.value_at(PREVIOUS_STAGE).await?;
        Ok(SecretValues { current, previous })
    }
}
