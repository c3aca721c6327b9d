//! Turning a marked method into a checked [`Declaration`]: which kind it
//! is, whether its markers agree, and one signature check for every kind.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ImplItemFn, Type};

use crate::attr::{self, Marker};
use crate::model::{Declaration, Extra, Kind, Label, Signature};

/// Takes the markers off `f` and checks it; `None` for an unmarked method.
pub(crate) fn declaration(f: &mut ImplItemFn) -> syn::Result<Option<Declaration>> {
    let marked: Vec<(Marker, Attribute)> = f
        .attrs
        .iter()
        .filter_map(|a| Marker::of(a).map(|m| (m, a.clone())))
        .collect();
    if marked.is_empty() {
        return Ok(None);
    }
    f.attrs.retain(|a| Marker::of(a).is_none());
    let kind = if marked.iter().any(|(m, _)| *m == Marker::Receiver) {
        receiver(&marked)?
    } else if marked.iter().any(|(m, _)| *m == Marker::Consumer) {
        consumer(&marked)?
    } else if marked.iter().any(|(m, _)| m.is_task()) {
        task(&marked)?
    } else {
        hook(&marked, &f.sig)?
    };
    let signature = signature(&f.sig, &kind)?;
    Ok(Some(Declaration {
        method: f.sig.ident.clone(),
        kind,
        signature,
    }))
}

/// `#[receiver(...)]`, alone.
fn receiver(marked: &[(Marker, Attribute)]) -> syn::Result<Kind> {
    if let Some((other, attr)) = marked.iter().find(|(m, _)| *m != Marker::Receiver) {
        return Err(syn::Error::new(
            attr.span(),
            format!(
                "a receiver is not also a hook, a task or a consumer: remove `#[{}]`, or declare another method",
                other.name()
            ),
        ));
    }
    if let Some((_, second)) = marked.get(1) {
        return Err(syn::Error::new(
            second.span(),
            "a receiver takes one signal: declare another method for the second one",
        ));
    }
    Ok(Kind::Receiver(attr::receiver(&marked[0].1)?))
}

/// `#[consumer(...)]`, alone.
fn consumer(marked: &[(Marker, Attribute)]) -> syn::Result<Kind> {
    if let Some((other, attr)) = marked.iter().find(|(m, _)| *m != Marker::Consumer) {
        return Err(syn::Error::new(
            attr.span(),
            format!(
                "a consumer is not also a hook, a task or a receiver: remove `#[{}]`, or declare another method",
                other.name()
            ),
        ));
    }
    if let Some((_, second)) = marked.get(1) {
        return Err(syn::Error::new(
            second.span(),
            "a consumer takes one queue: declare another method for the second one",
        ));
    }
    Ok(Kind::Consumer(attr::consumer(&marked[0].1)?))
}

/// `#[periodic(...)]` or `#[cron(...)]`, alone.
fn task(marked: &[(Marker, Attribute)]) -> syn::Result<Kind> {
    if let Some((_, on)) = marked.iter().find(|(m, _)| *m == Marker::On) {
        return Err(syn::Error::new(
            on.span(),
            "a method is either a task (`#[periodic]`, `#[cron]`) or a hook (`#[on]`), not both",
        ));
    }
    if let Some((_, second)) = marked.get(1) {
        return Err(syn::Error::new(
            second.span(),
            "a task has one schedule: one `#[periodic(...)]` or one `#[cron(...)]`",
        ));
    }
    let (marker, attr) = &marked[0];
    let spec = if *marker == Marker::Periodic {
        attr::periodic(attr)?
    } else {
        attr::cron(attr)?
    };
    Ok(Kind::Task(spec))
}

/// One or more `#[on(...)]`: lifecycle labels, or one `server`.
fn hook(marked: &[(Marker, Attribute)], sig: &syn::Signature) -> syn::Result<Kind> {
    let mut labels = Vec::new();
    let mut restart = None;
    for (_, attr) in marked {
        let (ident, policy) = attr::on(attr)?;
        let label = attr::label(&ident)?;
        if policy.is_some() {
            restart = policy;
        }
        if labels.contains(&label) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{}` is given twice for this hook", label.name()),
            ));
        }
        labels.push(label);
    }
    if labels.contains(&Label::Server) {
        if labels.len() > 1 {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a server hook cannot also be a lifecycle hook: it runs for as long as the agent",
            ));
        }
        return Ok(Kind::Server(restart));
    }
    Ok(Kind::Hook(labels))
}

/// The signature rules of one kind, and the words its errors use.
struct Rules {
    /// "a hook", "a task", "a server hook", "a receiver".
    what: &'static str,
    server: bool,
}

impl Rules {
    fn of(kind: &Kind) -> Rules {
        match kind {
            Kind::Hook(_) => Rules {
                what: "a hook",
                server: false,
            },
            Kind::Task(_) => Rules {
                what: "a task",
                server: false,
            },
            Kind::Server(_) => Rules {
                what: "a server hook",
                server: true,
            },
            Kind::Receiver(_) => Rules {
                what: "a receiver",
                server: false,
            },
            Kind::Consumer(_) => Rules {
                what: "a consumer",
                server: false,
            },
        }
    }

    /// The kind's name without its article ("hook", "task").
    fn noun(&self) -> &'static str {
        &self.what[2..]
    }
}

/// The one signature check. Hooks and tasks: `fn` or `async fn` taking
/// `&mut self` (or `&self`) and at most a context (sync) or the agent's
/// address (async). Servers: a plain `fn` taking `&self` and at most their
/// `ServerContext`, returning their future.
fn signature(sig: &syn::Signature, kind: &Kind) -> syn::Result<Signature> {
    let rules = Rules::of(kind);
    plain_shape(sig, &rules)?;
    let mut inputs = sig.inputs.iter();
    self_param(sig, inputs.next(), &rules)?;
    let is_async = sig.asyncness.is_some();
    if let Kind::Receiver(_) = kind {
        return receiver_params(sig, inputs, is_async);
    }
    if let Kind::Consumer(_) = kind {
        return consumer_params(sig, inputs, is_async);
    }
    let extra = extra_param(inputs.next(), &rules, is_async)?;
    if let Some(arg) = inputs.next() {
        return fail(
            arg.span(),
            if rules.server {
                "a server hook takes `&self` and at most its context: `srv: ServerContext<Self>`"
                    .into()
            } else {
                format!(
                    "{} takes `&mut self` and at most one more parameter: \
                     `ctx: &mut Context<Self>` (sync) or `addr: Addr<Self>` (async)",
                    rules.what
                )
            },
        );
    }
    let ret_span = match (&sig.output, rules.server) {
        (syn::ReturnType::Type(_, ty), _) => ty.span(),
        (syn::ReturnType::Default, false) => sig.ident.span(),
        (syn::ReturnType::Default, true) => return fail(
            sig.ident.span(),
            "a server hook returns its future: `-> impl Future<Output = Result<(), E>> + 'static`"
                .into(),
        ),
    };
    Ok(Signature {
        is_async,
        extra,
        sig_span: sig.span(),
        ret_span,
        signal_span: None,
        returns_result: returns_result(&sig.output),
    })
}

/// A declaration error at `span`.
fn fail<T>(span: Span, msg: String) -> syn::Result<T> {
    Err(syn::Error::new(span, msg))
}

/// Neither an `async fn` server hook nor a generic method.
fn plain_shape(sig: &syn::Signature, rules: &Rules) -> syn::Result<()> {
    if let (true, Some(token)) = (rules.server, &sig.asyncness) {
        return fail(
            token.span,
            "a server hook is a plain `fn` returning a `'static` future: it runs alongside the \
             agent's handlers, so it cannot hold `self` across `.await`; clone what it needs \
             from `&self`, then return `async move { ... }`"
                .into(),
        );
    }
    if !sig.generics.params.is_empty() {
        return fail(
            sig.generics.span(),
            if rules.server {
                "a server hook cannot be generic".into()
            } else {
                format!(
                    "{} cannot be generic: the lifecycle calls it with nothing to infer from",
                    rules.what
                )
            },
        );
    }
    Ok(())
}

/// The first parameter: `&mut self` (`&self` for a server hook).
fn self_param(sig: &syn::Signature, first: Option<&FnArg>, rules: &Rules) -> syn::Result<()> {
    let what = rules.what;
    match (first, rules.server) {
        (Some(FnArg::Receiver(r)), _) if r.reference.is_some() => Ok(()),
        (Some(FnArg::Receiver(r)), false) => fail(
            r.span(),
            format!("{what} takes `&mut self`, not `self`: the agent stays alive after it"),
        ),
        (Some(other), true) => fail(
            other.span(),
            "a server hook takes `&self` (or `&mut self`) to build its future".into(),
        ),
        (_, server) => {
            let receiver = if server { "&self" } else { "&mut self" };
            fail(
                sig.ident.span(),
                format!("{what} is a method: its first parameter is `{receiver}`"),
            )
        }
    }
}

/// The optional parameter after `self` of a hook, task or server: the
/// context (`&mut Context<Self>`, sync), the address or the server's
/// context (by value).
fn extra_param(arg: Option<&FnArg>, rules: &Rules, is_async: bool) -> syn::Result<Extra> {
    match (arg, rules.server) {
        (None, _) => Ok(Extra::None),
        (Some(FnArg::Typed(arg)), true) if !matches!(&*arg.ty, Type::Reference(_)) => {
            Ok(Extra::Value)
        }
        (Some(other), true) => fail(
            other.span(),
            "a server hook's second parameter is its context, by value: `srv: ServerContext<Self>`"
                .into(),
        ),
        (Some(FnArg::Typed(arg)), false) => match (&*arg.ty, is_async) {
            (Type::Reference(r), false) if r.mutability.is_some() => Ok(Extra::Context),
            (_, false) => fail(
                arg.ty.span(),
                format!(
                    "the second parameter of a sync {} is the agent's context: `ctx: &mut Context<Self>`",
                    rules.noun()
                ),
            ),
            (Type::Reference(_), true) => fail(
                arg.ty.span(),
                format!(
                    "an async {} cannot borrow the context across `.await`; \
                     take the agent's address (`addr: Addr<Self>`) or make it a plain `fn`",
                    rules.noun()
                ),
            ),
            (_, true) => Ok(Extra::Value),
        },
        (Some(other), false) => fail(other.span(), "unexpected parameter".into()),
    }
}

/// A receiver's parameters after `self`: the signal by value, then
/// optionally the sender's name (`sender: String`).
fn receiver_params<'a>(
    sig: &syn::Signature,
    mut inputs: impl Iterator<Item = &'a FnArg>,
    is_async: bool,
) -> syn::Result<Signature> {
    let by_value = |arg: Option<&FnArg>, what: &str| match arg {
        Some(FnArg::Typed(t)) if !matches!(&*t.ty, Type::Reference(_)) => Ok(Some(t.ty.span())),
        Some(other) => Err(syn::Error::new(
            other.span(),
            format!(
                "a receiver takes {what} by value (it may outlive the delivery across `.await`)"
            ),
        )),
        None => Ok(None),
    };
    let Some(signal_span) = by_value(inputs.next(), "its signal")? else {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a receiver takes its signal: `fn on_user(&mut self, signal: UserCreated [, sender: String])`",
        ));
    };
    let with_sender = by_value(inputs.next(), "the sender's name")?.is_some();
    if let Some(arg) = inputs.next() {
        return Err(syn::Error::new(
            arg.span(),
            "a receiver takes `&mut self`, its signal and at most the sender's name: `sender: String`",
        ));
    }
    let ret_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => sig.ident.span(),
    };
    Ok(Signature {
        is_async,
        extra: if with_sender {
            Extra::Value
        } else {
            Extra::None
        },
        sig_span: sig.span(),
        ret_span,
        signal_span: Some(signal_span),
        returns_result: returns_result(&sig.output),
    })
}

/// A consumer's parameters after `self`: the message by value.
fn consumer_params<'a>(
    sig: &syn::Signature,
    mut inputs: impl Iterator<Item = &'a FnArg>,
    is_async: bool,
) -> syn::Result<Signature> {
    let message_span = match inputs.next() {
        Some(FnArg::Typed(t)) if !matches!(&*t.ty, Type::Reference(_)) => t.ty.span(),
        Some(other) => return Err(syn::Error::new(
            other.span(),
            "a consumer takes its message by value (it may outlive the delivery across `.await`)",
        )),
        None => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a consumer takes its message: `fn send_mail(&mut self, mail: Mail)`",
            ))
        }
    };
    if let Some(arg) = inputs.next() {
        return Err(syn::Error::new(
            arg.span(),
            "a consumer takes `&mut self` and its message",
        ));
    }
    let ret_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => sig.ident.span(),
    };
    Ok(Signature {
        is_async,
        extra: Extra::None,
        sig_span: sig.span(),
        ret_span,
        signal_span: Some(message_span),
        returns_result: returns_result(&sig.output),
    })
}

/// Whether a return type is spelled `...::Result<..>`.
fn returns_result(output: &syn::ReturnType) -> bool {
    match output {
        syn::ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        syn::ReturnType::Default => false,
    }
}
