//! Parsing the attributes: `#[microagent(...)]` on the struct, and the
//! markers `#[on(...)]`, `#[periodic(...)]`, `#[cron(...)]` on methods.

use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, MetaNameValue, Token};

use crate::model::{
    ConsumerSpec, Label, ReceiverSpec, Restart, Schedule, Seconds, TaskSpec, ZoneSpec,
};

/// The markers a hooks block takes off its methods.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    On,
    Periodic,
    Cron,
    Receiver,
    Consumer,
}

impl Marker {
    const ALL: [Marker; 5] = [
        Marker::On,
        Marker::Periodic,
        Marker::Cron,
        Marker::Receiver,
        Marker::Consumer,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Marker::On => "on",
            Marker::Periodic => "periodic",
            Marker::Cron => "cron",
            Marker::Receiver => "receiver",
            Marker::Consumer => "consumer",
        }
    }

    /// Which marker `attr` is: `#[name(...)]` or `#[microagent::name(...)]`.
    pub(crate) fn of(attr: &Attribute) -> Option<Marker> {
        let path = attr.path();
        Marker::ALL.into_iter().find(|m| {
            path.is_ident(m.name())
                || (path.segments.len() == 2
                    && path.segments[0].ident == "microagent"
                    && path.segments[1].ident == m.name())
        })
    }

    /// Whether this marker declares a task.
    pub(crate) fn is_task(self) -> bool {
        matches!(self, Marker::Periodic | Marker::Cron)
    }
}

/// The options of `#[microagent(...)]` on the struct.
pub(crate) struct AgentOptions {
    /// `name = "..."`: the agent's name (the struct's name otherwise).
    pub(crate) name: LitStr,
    /// `stand_in = <expr>`: what the actor holds while an async hook owns
    /// the agent, for agents that are not `Default`.
    pub(crate) stand_in: Option<syn::Expr>,
}

/// Parses one `#[microagent(...)]` attribute into `options`.
pub(crate) fn agent_options(attr: &Attribute, options: &mut AgentOptions) -> syn::Result<()> {
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("name") {
            options.name = meta.value()?.parse()?;
            Ok(())
        } else if meta.path.is_ident("stand_in") {
            options.stand_in = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown `microagent` option; expected `name = \"...\"` or `stand_in = <expression>`",
            ))
        }
    })
}

/// Parses an `#[on(...)]` label.
pub(crate) fn label(ident: &Ident) -> syn::Result<Label> {
    if let Some(label) = Label::ALL.into_iter().find(|l| ident == l.name()) {
        return Ok(label);
    }
    let hint = match ident.to_string().as_str() {
        "periodic" => " (a periodic task is declared with `#[periodic(period = ...)]`)",
        "cron" => " (a cron task is declared with `#[cron(\"...\")]`)",
        _ => "",
    };
    Err(syn::Error::new(
        ident.span(),
        format!(
            "unknown hook label `{ident}`{hint}; expected one of: pre_start, post_start, pre_stop, server"
        ),
    ))
}

/// Parses `#[on(label)]` or, for servers,
/// `#[on(server, restarts = 3, within = 60.0, backoff = 0.5)]`.
pub(crate) fn on(attr: &Attribute) -> syn::Result<(Ident, Option<Restart>)> {
    attr.parse_args_with(|input: ParseStream| {
        let ident: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a hook label: `#[on(pre_start)]`, `#[on(post_start)]`, `#[on(pre_stop)]` or `#[on(server)]`",
            )
        })?;
        if input.is_empty() {
            return Ok((ident, None));
        }
        input.parse::<Token![,]>()?;
        if ident != "server" {
            return Err(syn::Error::new(
                input.span(),
                "only `server` hooks take options (`restarts`, `within`, `backoff`)",
            ));
        }
        let (mut restarts, mut within, mut backoff) = (None, 60.0, 0.0);
        for option in &options(input)? {
            match option_key(option).as_str() {
                "restarts" => {
                    let value = number(&option.value)?;
                    if !(value >= 0.0 && value.fract() == 0.0 && value <= f64::from(u32::MAX)) {
                        return Err(syn::Error::new(
                            option.value.span(),
                            "`restarts` is a whole number",
                        ));
                    }
                    restarts = Some(value as u32);
                }
                "within" => within = seconds(option, false)?,
                "backoff" => backoff = seconds(option, true)?,
                _ => {
                    return Err(syn::Error::new(
                        option.path.span(),
                        "unknown server option; expected `restarts`, `within` or `backoff`",
                    ))
                }
            }
        }
        let restarts = restarts.ok_or_else(|| {
            syn::Error::new(ident.span(), "a restart policy needs `restarts = N`")
        })?;
        Ok((
            ident,
            Some(Restart {
                restarts,
                within,
                backoff,
            }),
        ))
    })
}

/// Parses `#[periodic(period = 5.0, timeout = 1.0, start_after = 0.0)]`.
pub(crate) fn periodic(attr: &Attribute) -> syn::Result<TaskSpec> {
    let options = attr.parse_args_with(options)?;
    let (mut period, mut timeout, mut start_after) = (None, 1.0, Seconds::Literal(0.0));
    for option in &options {
        match option_key(option).as_str() {
            "period" => period = Some(seconds_or_const(option, false)?),
            "timeout" => timeout = seconds(option, false)?,
            "start_after" => start_after = seconds_or_const(option, true)?,
            _ => {
                return Err(syn::Error::new(
                    option.path.span(),
                    "unknown `periodic` option; expected `period`, `timeout` or `start_after`",
                ))
            }
        }
    }
    let period = period.ok_or_else(|| {
        syn::Error::new(attr.span(), "a periodic task needs `period = <seconds>`")
    })?;
    Ok(TaskSpec {
        timeout,
        schedule: Schedule::Every {
            period,
            start_after,
        },
    })
}

/// Parses `#[cron("0 */4 * * *", timeout = 30.0, tz = "local")]`, checking
/// the expression with the parser the runtime uses.
pub(crate) fn cron(attr: &Attribute) -> syn::Result<TaskSpec> {
    attr.parse_args_with(|input: ParseStream| {
        let expression: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a cron expression first: `#[cron(\"0 */4 * * *\")]`",
            )
        })?;
        if let Err(e) = <croner::Cron as std::str::FromStr>::from_str(&expression.value()) {
            return Err(syn::Error::new(
                expression.span(),
                format!("invalid cron expression: {e}"),
            ));
        }
        let (mut timeout, mut zone_spec) = (1.0, ZoneSpec::Utc);
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
            for option in &options(input)? {
                match option_key(option).as_str() {
                    "timeout" => timeout = seconds(option, false)?,
                    "tz" => zone_spec = zone(option)?,
                    _ => {
                        return Err(syn::Error::new(
                            option.path.span(),
                            "unknown `cron` option; expected `timeout` or `tz`",
                        ))
                    }
                }
            }
        }
        Ok(TaskSpec {
            timeout,
            schedule: Schedule::Cron {
                expression,
                zone: zone_spec,
            },
        })
    })
}

/// Parses `#[receiver(UserCreated, timeout = 60.0)]` (60 s by default, as
/// in the original).
pub(crate) fn receiver(attr: &Attribute) -> syn::Result<ReceiverSpec> {
    attr.parse_args_with(|input: ParseStream| {
        let signal: syn::Type = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the signal's type first: `#[receiver(UserCreated)]`",
            )
        })?;
        let mut timeout = 60.0;
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
            for option in &options(input)? {
                match option_key(option).as_str() {
                    "timeout" => timeout = seconds(option, false)?,
                    _ => {
                        return Err(syn::Error::new(
                            option.path.span(),
                            "unknown `receiver` option; expected `timeout`",
                        ))
                    }
                }
            }
        }
        Ok(ReceiverSpec { signal, timeout })
    })
}

/// Parses `#[consumer(Mail, timeout = 60.0, attempts = 3, backoff = 1.0,
/// prefetch = 1)]` (those are the defaults).
pub(crate) fn consumer(attr: &Attribute) -> syn::Result<ConsumerSpec> {
    attr.parse_args_with(|input: ParseStream| {
        let queue: syn::Type = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the message's type first: `#[consumer(Mail)]`",
            )
        })?;
        let mut spec = ConsumerSpec {
            queue,
            timeout: 60.0,
            attempts: 3,
            backoff: 1.0,
            prefetch: 1,
        };
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
            for option in &options(input)? {
                match option_key(option).as_str() {
                    "timeout" => spec.timeout = seconds(option, false)?,
                    "backoff" => spec.backoff = seconds(option, true)?,
                    "attempts" => spec.attempts = count(option, "attempts")?,
                    "prefetch" => spec.prefetch = count(option, "prefetch")?,
                    _ => {
                        return Err(syn::Error::new(
                            option.path.span(),
                            "unknown `consumer` option; expected `timeout`, `attempts`, `backoff` or `prefetch`",
                        ))
                    }
                }
            }
        }
        Ok(spec)
    })
}

/// A whole number of at least 1: `attempts = 3`.
fn count(option: &MetaNameValue, what: &str) -> syn::Result<u32> {
    let value = match &option.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => int.base10_parse::<u32>()?,
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("`{what}` is a whole number: `{what} = 3`"),
            ))
        }
    };
    if value == 0 {
        return Err(syn::Error::new(
            option.value.span(),
            format!("`{what}` is at least 1"),
        ));
    }
    Ok(value)
}

/// `tz = "utc"`, `tz = "local"`, or an IANA name (`tz = "Europe/Berlin"`,
/// with microagent's `tz` feature, checked against the database).
fn zone(option: &MetaNameValue) -> syn::Result<ZoneSpec> {
    let name = match &option.value {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => s.clone(),
        other => {
            return Err(syn::Error::new(
                other.span(),
                "`tz` is \"utc\", \"local\" or a time zone's name such as \"Europe/Berlin\"",
            ))
        }
    };
    match name.value().as_str() {
        "utc" | "UTC" => Ok(ZoneSpec::Utc),
        "local" => Ok(ZoneSpec::Local),
        _ => named_zone(name),
    }
}

#[cfg(feature = "tz")]
fn named_zone(name: LitStr) -> syn::Result<ZoneSpec> {
    match name.value().parse::<chrono_tz::Tz>() {
        Ok(_) => Ok(ZoneSpec::Named(name)),
        Err(_) => Err(syn::Error::new(
            name.span(),
            format!(
                "unknown time zone `{}`; expected \"utc\", \"local\" or a name of the IANA time zone database such as \"Europe/Berlin\"",
                name.value()
            ),
        )),
    }
}

#[cfg(not(feature = "tz"))]
fn named_zone(name: LitStr) -> syn::Result<ZoneSpec> {
    Err(syn::Error::new(
        name.span(),
        "a named time zone needs microagent's `tz` feature (`features = [\"tz\"]`); without it `tz` is \"utc\" (the default) or \"local\"",
    ))
}

/// `key = value, ...` to the end of the input.
fn options(input: ParseStream) -> syn::Result<Punctuated<MetaNameValue, Token![,]>> {
    Punctuated::parse_terminated(input)
}

/// The name of a `key = value` option (empty when it is not a plain name).
fn option_key(option: &MetaNameValue) -> String {
    option
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A literal number of seconds: above 0, or 0 or more with `zero_ok`.
fn seconds(option: &MetaNameValue, zero_ok: bool) -> syn::Result<f64> {
    let value = number(&option.value)?;
    let key = option_key(option);
    if value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) {
        Ok(value)
    } else if zero_ok {
        Err(syn::Error::new(
            option.value.span(),
            format!("`{key}` is a number of seconds, 0 or more"),
        ))
    } else {
        Err(syn::Error::new(
            option.value.span(),
            format!("`{key}` is a number of seconds above 0"),
        ))
    }
}

/// Seconds as a literal (checked now) or any other expression, which must
/// be a constant number (checked by the compiler).
fn seconds_or_const(option: &MetaNameValue, zero_ok: bool) -> syn::Result<Seconds> {
    if let syn::Expr::Lit(_) = &option.value {
        return seconds(option, zero_ok).map(Seconds::Literal);
    }
    Ok(Seconds::Const {
        expr: Box::new(option.value.clone()),
        key: option_key(option),
        zero_ok,
    })
}

/// A literal number, integer or float.
fn number(expr: &syn::Expr) -> syn::Result<f64> {
    if let syn::Expr::Lit(syn::ExprLit { lit, .. }) = expr {
        match lit {
            syn::Lit::Int(i) => return i.base10_parse::<f64>(),
            syn::Lit::Float(f) => return f.base10_parse::<f64>(),
            _ => {}
        }
    }
    Err(syn::Error::new(expr.span(), "expected a number"))
}
