//! What a DynamoDB failure means, decided in one place: the [`ErrorKind`] the worker acts on,
//! and a short message a person can act on (what happened, what to check). Never the SDK's
//! Debug output: its structs say nothing an operator can use and run to a kilobyte.

use super::{ErrorKind, StoreError};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use std::error::Error;

/// How to give the worker credentials, said wherever they are missing or refused.
const HOW_TO_PROVIDE_CREDENTIALS: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
     (a profile in ~/.aws/credentials or ~/.aws/config), or run with an IAM role (instance profile, \
     ECS task role, EKS pod identity or IRSA)";

/// Where the requests go, for messages that must name it: the endpoint the SDK resolves
/// (`AWS_ENDPOINT_URL_DYNAMODB`, then `AWS_ENDPOINT_URL` or one set in code), else AWS's
/// regional endpoint.
pub(super) fn endpoint_of(config: &aws_config::SdkConfig) -> String {
    let explicit = config.get_origin("endpoint_url").is_client_config();
    let from_variable = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .ok()
        .filter(|url| !url.is_empty() && !explicit);
    match (from_variable, config.endpoint_url()) {
        (Some(url), _) => url,
        (None, Some(url)) => url.to_owned(),
        (None, None) => {
            let region = config.region().map_or("us-east-1", |region| region.as_ref());
            format!("https://dynamodb.{region}.amazonaws.com")
        }
    }
}

/// Sorts a failed `operation` on `table` (at `endpoint`) into what the worker should do, and
/// says it in one line.
pub(super) fn classify<E>(
    operation: &str,
    table: &str,
    endpoint: &str,
    error: &SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    // Credentials are resolved before a request is sent: the SDK reports their absence as a
    // failure to dispatch, which would otherwise pass for a network blip.
    if let Some(credentials) = find::<CredentialsError>(error) {
        return credentials_failed(credentials);
    }
    match error {
        SdkError::TimeoutError(_) => StoreError::new(
            ErrorKind::Transient,
            format!("dynamodb {operation} on {table}: no answer from {endpoint} in time"),
        ),
        SdkError::DispatchFailure(_) => {
            let refused = find::<std::io::Error>(error)
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            let why = if refused {
                "connection refused".to_owned()
            } else {
                causes(error)
            };
            StoreError::new(
                ErrorKind::Transient,
                format!(
                    "cannot reach DynamoDB at {endpoint}: {why} (check that it runs and \
                     AWS_ENDPOINT_URL_DYNAMODB, or unset that variable to use AWS itself)"
                ),
            )
        }
        SdkError::ResponseError(_) => StoreError::new(
            ErrorKind::Transient,
            format!(
                "dynamodb {operation} on {table}: unreadable answer from {endpoint}: {}",
                causes(error)
            ),
        ),
        SdkError::ConstructionFailure(_) => StoreError::new(
            ErrorKind::Systemic,
            format!(
                "dynamodb {operation} on {table}: cannot build the request: {} (check AWS_REGION and \
                 the AWS configuration)",
                causes(error)
            ),
        ),
        _ => service_error(operation, table, error),
    }
}

/// The service answered with an error: its code says what it means.
fn service_error<E>(operation: &str, table: &str, error: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + Error + 'static,
{
    let code = error.code().unwrap_or_default();
    let detail = match error.message() {
        Some(message) => format!("{}: {message}", error.code().unwrap_or("error")),
        None => causes(error),
    };
    let said = |hint: &str| format!("dynamodb {operation} on {table}: {detail}{hint}");
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "TransactionConflictException" => StoreError::new(ErrorKind::Transient, said("")),
        "ResourceNotFoundException" => StoreError::new(
            ErrorKind::Systemic,
            said(" (the table is missing: run `notification-worker setup` or check NOTIF_TABLE_NAME)"),
        ),
        // Credentials that expire are renewed by the SDK's provider; the rest stay wrong
        // until someone changes them.
        "ExpiredTokenException" => StoreError::new(
            ErrorKind::Systemic,
            said(" (the AWS credentials expired: check what renews them)"),
        ),
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "MissingAuthenticationTokenException"
        | "IncompleteSignatureException" => StoreError::configuration(said(&format!(
            " (the AWS credentials are not valid: {HOW_TO_PROVIDE_CREDENTIALS})"
        ))),
        "AccessDeniedException" => StoreError::configuration(said(
            " (the IAM policy must allow dynamodb:DescribeTable, Query, GetItem, PutItem, UpdateItem and \
             DeleteItem on the table and its index; CreateTable and UpdateTimeToLive for `setup`)",
        )),
        // A key that does not fit the table's key schema or an index's key type fails every
        // item alike: the table is wrong, not the event. Dead-lettering would empty the
        // whole stream into the dead letters.
        "ValidationException" if mismatches_the_schema(error.message().unwrap_or_default()) => {
            StoreError::new(
                ErrorKind::Systemic,
                said(
                    " (the table's keys do not match: NOTIF_TABLE_NAME must have owner (S) HASH, \
                 action_key (S) RANGE and OwnerIndex on owner (S), created_at (S); see `notification-worker setup`)",
                ),
            )
        }
        "ValidationException" | "ItemCollectionSizeLimitExceededException" => {
            StoreError::new(ErrorKind::Permanent, said(""))
        }
        // Unknown service errors: 5xx are the service's trouble, the rest are ours.
        _ if error
            .raw_response()
            .is_some_and(|raw| raw.status().is_server_error()) =>
        {
            StoreError::new(ErrorKind::Transient, said(""))
        }
        _ => StoreError::new(ErrorKind::Systemic, said("")),
    }
}

fn credentials_failed(error: &CredentialsError) -> StoreError {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => StoreError::configuration(format!(
            "no AWS credentials were found: {HOW_TO_PROVIDE_CREDENTIALS}. This is configuration, \
             not a transient fault: nothing changes until they are provided"
        )),
        CredentialsError::InvalidConfiguration(_) => StoreError::configuration(format!(
            "the AWS credentials cannot be loaded: {} ({HOW_TO_PROVIDE_CREDENTIALS})",
            causes(error)
        )),
        CredentialsError::ProviderTimedOut(_) => StoreError::new(
            ErrorKind::Transient,
            "the AWS credentials provider did not answer in time",
        ),
        _ => StoreError::new(
            ErrorKind::Systemic,
            format!("cannot load the AWS credentials: {}", causes(error)),
        ),
    }
}

/// The first error of type `T` in `error`'s chain of causes.
fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

/// The causes' own words, outermost first, each said once: what `{:#}` would print, without
/// the SDK's vague outer layers ("dispatch failure", "service error") or any Debug output.
fn causes(error: &(dyn Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = error.source().or(Some(error));
    while let Some(error) = next {
        let text = error.to_string();
        if !text.is_empty() && !said.iter().any(|earlier| earlier.contains(&text)) {
            said.push(text);
        }
        next = error.source();
    }
    said.join(": ")
}

/// ValidationException messages that say the table's key schema or an index's key type is
/// not the one the worker writes (DynamoDB's and dynalite's wording).
fn mismatches_the_schema(message: &str) -> bool {
    [
        "Type mismatch for key",
        "Type mismatch for Index Key",
        "Missing the key",
        "The provided key element does not match the schema",
    ]
    .iter()
    .any(|sign| message.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_mismatches_are_told_from_item_refusals() {
        for message in [
            "One or more parameter values were invalid: Type mismatch for key action_key expected: N actual: S",
            "One or more parameter values were invalid: Type mismatch for Index Key created_at Expected: N Actual: S IndexName: OwnerIndex",
            "One or more parameter values were invalid: Missing the key pk in the item",
            "The provided key element does not match the schema",
        ] {
            assert!(mismatches_the_schema(message), "{message}");
        }
        assert!(!mismatches_the_schema(
            "Item size has exceeded the maximum allowed size"
        ));
    }

    #[test]
    fn causes_are_said_once_outermost_first() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Outer(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let error = Outer(refused);
        assert_eq!(causes(&error), "Connection refused");
        assert!(find::<std::io::Error>(&error).is_some());
    }
}
