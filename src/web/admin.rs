//! The admin endpoints: an operator lists, requeues and purges dead
//! letters, and purges a queue, on the System's broker (whatever its
//! backend). Off unless a token is given; every request must carry it.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde_json::json;

use crate::broker::{Broker, BrokerError};

/// The shortest token the admin endpoints take.
pub const MIN_TOKEN_LEN: usize = 16;

/// The token every admin request must carry, as
/// `Authorization: Bearer <token>`.
#[derive(Clone)]
struct Token(Arc<str>);

impl Token {
    /// Whether `request` carries the token. The comparison takes as long
    /// whatever the first differing byte.
    fn admits(&self, request: &HttpRequest) -> bool {
        let Some(given) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (given, expected) = (given.as_bytes(), self.0.as_bytes());
        let differences = given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differences == 0 && given.len() == expected.len()
    }
}

/// The admin endpoints, to mount with
/// `App::new().configure(microagent::web::admin(token))` (the health
/// server mounts them when the configuration has `[admin] token`):
///
/// - `GET /admin/queues/{queue}/dead-letters`: the dead letters, oldest
///   first (`[{"queue", "message", "reason", "attempts"}]`);
/// - `POST /admin/queues/{queue}/dead-letters/requeue`: sends them back to
///   their queue (`{"requeued": n}`);
/// - `DELETE /admin/queues/{queue}/dead-letters`: deletes them
///   (`{"purged": n}`);
/// - `DELETE /admin/queues/{queue}`: deletes the messages waiting in the
///   queue (`{"purged": n}`).
///
/// Every request needs `Authorization: Bearer <token>`; without it, or with
/// another token, the answer is 401 and nothing is done. A broker error is
/// 502 with its message (the URL's password redacted).
///
/// # Panics
/// When `token` is shorter than [`MIN_TOKEN_LEN`] bytes.
pub fn admin(token: impl Into<String>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let token: String = token.into();
    assert!(
        token.len() >= MIN_TOKEN_LEN,
        "microagent: an admin token has {MIN_TOKEN_LEN} bytes or more"
    );
    let token = Token(token.into());
    move |cfg: &mut web::ServiceConfig| {
        let dead = "/admin/queues/{queue}/dead-letters";
        cfg.app_data(web::Data::new(token.clone()))
            .route(dead, web::get().to(handler(Action::List)))
            .route(
                "/admin/queues/{queue}/dead-letters/requeue",
                web::post().to(handler(Action::Requeue)),
            )
            .route(dead, web::delete().to(handler(Action::PurgeDead)))
            .route(
                "/admin/queues/{queue}",
                web::delete().to(handler(Action::Purge)),
            );
    }
}

/// What an admin request asks of the broker.
#[derive(Debug, Clone, Copy)]
enum Action {
    List,
    Requeue,
    PurgeDead,
    Purge,
}

/// The request's extractors: its head, the token, the queue's name.
type Extracted = (HttpRequest, web::Data<Token>, web::Path<String>);

/// The handler of `action`.
fn handler(
    action: Action,
) -> impl Fn(HttpRequest, web::Data<Token>, web::Path<String>) -> LocalBoxFuture<'static, HttpResponse>
       + Clone
       + 'static {
    move |request, token, queue| Box::pin(act(action, (request, token, queue)))
}

/// Does `action` if the request carries the token.
async fn act(action: Action, (request, token, queue): Extracted) -> HttpResponse {
    if !token.admits(&request) {
        return unauthorized();
    }
    let broker = Broker::current();
    let done = match action {
        Action::List => broker.dead_letters(&queue).await.map(|letters| {
            let listed: Vec<_> = letters
                .iter()
                .map(|letter| {
                    json!({
                        "queue": letter.queue,
                        "message": letter.message,
                        "reason": letter.reason,
                        "attempts": letter.attempts,
                    })
                })
                .collect();
            json!(listed)
        }),
        Action::Requeue => {
            (broker.requeue_dead_letters(&queue).await).map(|n| json!({"requeued": n}))
        }
        Action::PurgeDead => {
            (broker.purge_dead_letters(&queue).await).map(|n| json!({"purged": n}))
        }
        Action::Purge => broker.purge(&queue).await.map(|n| json!({"purged": n})),
    };
    match done {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(e) => failed(&e),
    }
}

/// 401, asking for the token.
fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "this endpoint needs the admin token"}))
}

fn failed(error: &BrokerError) -> HttpResponse {
    let status = match error {
        BrokerError::Name { .. } => actix_web::http::StatusCode::BAD_REQUEST,
        _ => actix_web::http::StatusCode::BAD_GATEWAY,
    };
    HttpResponse::build(status).json(json!({"error": error.to_string()}))
}
