//! Procedural macros of [`microagent`](https://docs.rs/microagent): use them
//! through that crate, which re-exports them.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, DeriveInput, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl,
    LitStr, Type,
};

/// Makes a struct an agent. See `microagent::MicroAgent`.
#[proc_macro_derive(MicroAgent, attributes(microagent))]
pub fn derive_micro_agent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Collects the hooks of an agent. See `microagent::hooks`.
#[proc_macro_attribute]
pub fn hooks(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = TokenStream2::from(args);
    let item = parse_macro_input!(input as ItemImpl);
    expand_hooks(args, item)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// `#[on(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn on(_args: TokenStream, input: TokenStream) -> TokenStream {
    let mut out = syn::Error::new(
        Span::call_site(),
        "`#[on(...)]` only marks methods inside a `#[microagent::hooks]` impl block",
    )
    .into_compile_error();
    out.extend(TokenStream2::from(input));
    out.into()
}

/// `#[periodic(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn periodic(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside("periodic", input)
}

/// `#[cron(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn cron(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside("cron", input)
}

fn outside(name: &str, input: TokenStream) -> TokenStream {
    let mut out = syn::Error::new(
        Span::call_site(),
        format!("`#[{name}(...)]` only marks methods inside a `#[microagent::hooks]` impl block"),
    )
    .into_compile_error();
    out.extend(TokenStream2::from(input));
    out.into()
}

fn derive(input: DeriveInput) -> syn::Result<TokenStream2> {
    if let syn::Data::Union(u) = &input.data {
        return Err(syn::Error::new(
            u.union_token.span,
            "an agent is a struct or an enum, not a union",
        ));
    }
    let ident = &input.ident;
    let mut name = LitStr::new(&ident.to_string(), ident.span());
    // A wrong option is reported, but the impls are still generated so that
    // it is the only error.
    let mut option_errors = TokenStream2::new();
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("microagent"))
    {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = meta.value()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("unknown `microagent` option; expected `name = \"...\"`"))
            }
        });
        if let Err(e) = parsed {
            option_errors.extend(e.into_compile_error());
        }
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #option_errors

        impl #impl_generics ::microagent::Agent for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
        }

        impl #impl_generics ::microagent::actix::Actor for #ident #ty_generics #where_clause {
            type Context = ::microagent::Context<Self>;

            fn started(&mut self, ctx: &mut Self::Context) {
                ::microagent::__private::started(self, ctx)
            }

            fn stopping(&mut self, ctx: &mut Self::Context) -> ::microagent::actix::Running {
                ::microagent::__private::stopping(self, ctx)
            }

            fn stopped(&mut self, ctx: &mut Self::Context) {
                ::microagent::__private::stopped(self, ctx)
            }
        }

        impl #impl_generics ::microagent::actix::Handler<::microagent::StopAgent>
            for #ident #ty_generics #where_clause
        {
            type Result = ();

            fn handle(&mut self, _: ::microagent::StopAgent, ctx: &mut Self::Context) {
                ::microagent::actix::ActorContext::stop(ctx)
            }
        }

        impl #impl_generics ::microagent::actix::Handler<::microagent::GetInfo>
            for #ident #ty_generics #where_clause
        {
            type Result = ::microagent::actix::MessageResult<::microagent::GetInfo>;

            fn handle(&mut self, _: ::microagent::GetInfo, _: &mut Self::Context) -> Self::Result {
                ::microagent::actix::MessageResult(::microagent::__private::describe::<Self>())
            }
        }

        impl #impl_generics ::microagent::actix::Handler<::microagent::ServerInterrupt>
            for #ident #ty_generics #where_clause
        {
            type Result = ();

            fn handle(&mut self, msg: ::microagent::ServerInterrupt, ctx: &mut Self::Context) {
                ::microagent::__private::interrupt(self, ctx, msg)
            }
        }
    })
}

/// The labels `#[on(...)]` accepts, each with its hook-table field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    PreStart,
    PostStart,
    PreStop,
    Server,
}

impl Label {
    const ALL: [Label; 4] = [
        Label::PreStart,
        Label::PostStart,
        Label::PreStop,
        Label::Server,
    ];

    fn name(self) -> &'static str {
        match self {
            Label::PreStart => "pre_start",
            Label::PostStart => "post_start",
            Label::PreStop => "pre_stop",
            Label::Server => "server",
        }
    }

    fn parse(ident: &Ident) -> syn::Result<Label> {
        if let Some(label) = Label::ALL.into_iter().find(|l| ident == l.name()) {
            return Ok(label);
        }
        let hint = match ident.to_string().as_str() {
            "periodic" | "cron" => " (not supported yet)",
            _ => "",
        };
        Err(syn::Error::new(
            ident.span(),
            format!(
                "unknown hook label `{ident}`{hint}; expected one of: pre_start, post_start, pre_stop, server"
            ),
        ))
    }
}

/// Whether `attr` is `#[name(...)]` or `#[microagent::name(...)]`.
fn is_marker(attr: &Attribute, name: &str) -> bool {
    let path = attr.path();
    path.is_ident(name)
        || (path.segments.len() == 2
            && path.segments[0].ident == "microagent"
            && path.segments[1].ident == name)
}

fn is_on(attr: &Attribute) -> bool {
    is_marker(attr, "on")
}

fn is_task(attr: &Attribute) -> bool {
    is_marker(attr, "periodic") || is_marker(attr, "cron")
}

/// Any attribute the hooks block takes off its methods.
fn is_hook_marker(attr: &Attribute) -> bool {
    is_on(attr) || is_task(attr)
}

/// What a hook is handed besides `self`.
enum Extra {
    None,
    Context,
    Address,
}

struct HookMethod {
    ident: Ident,
    labels: Vec<Label>,
    is_async: bool,
    extra: Extra,
    /// `#[on(server, restarts = .., within = .., backoff = ..)]`.
    restart: Option<Restart>,
    /// `#[periodic(...)]` or `#[cron(...)]`.
    task: Option<TaskSpec>,
    sig_span: Span,
    ret_span: Span,
}

/// A periodic or cron task, as declared.
struct TaskSpec {
    timeout: f64,
    schedule: TaskSchedule,
}

enum TaskSchedule {
    Every { period: f64, start_after: f64 },
    Cron { expression: LitStr, local: bool },
}

/// Parses `#[periodic(period = 5.0, timeout = 1.0, start_after = 0.0)]`.
fn parse_periodic(attr: &Attribute) -> syn::Result<TaskSpec> {
    let options = attr.parse_args_with(
        syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated,
    )?;
    let (mut period, mut timeout, mut start_after) = (None, 1.0, 0.0);
    for option in &options {
        let key = option_key(option);
        match key.as_str() {
            "period" => period = Some(seconds(option, false)?),
            "timeout" => timeout = seconds(option, false)?,
            "start_after" => start_after = seconds(option, true)?,
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
        schedule: TaskSchedule::Every {
            period,
            start_after,
        },
    })
}

/// Parses `#[cron("0 */4 * * *", timeout = 30.0, tz = "local")]`, checking
/// the expression with the parser the runtime uses.
fn parse_cron(attr: &Attribute) -> syn::Result<TaskSpec> {
    attr.parse_args_with(|input: syn::parse::ParseStream| {
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
        let (mut timeout, mut local) = (1.0, false);
        if !input.is_empty() {
            input.parse::<syn::Token![,]>()?;
            let options =
                syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated(
                    input,
                )?;
            for option in &options {
                let key = option_key(option);
                match key.as_str() {
                    "timeout" => timeout = seconds(option, false)?,
                    "tz" => {
                        let zone = match &option.value {
                            syn::Expr::Lit(syn::ExprLit {
                                lit: syn::Lit::Str(s),
                                ..
                            }) => s.value(),
                            other => {
                                return Err(syn::Error::new(
                                    other.span(),
                                    "`tz` is \"utc\" or \"local\"",
                                ))
                            }
                        };
                        local = match zone.as_str() {
                            "utc" | "UTC" => false,
                            "local" => true,
                            _ => {
                                return Err(syn::Error::new(
                                    option.value.span(),
                                    "`tz` is \"utc\" (the default) or \"local\"; named time zones are not supported",
                                ))
                            }
                        };
                    }
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
            schedule: TaskSchedule::Cron { expression, local },
        })
    })
}

/// Checks a periodic or cron method and strips its attribute.
fn take_task(f: &mut ImplItemFn) -> syn::Result<HookMethod> {
    let attrs: Vec<Attribute> = f.attrs.iter().filter(|a| is_task(a)).cloned().collect();
    f.attrs.retain(|a| !is_task(a));
    if let Some(on) = f.attrs.iter().find(|a| is_on(a)) {
        return Err(syn::Error::new(
            on.span(),
            "a method is either a task (`#[periodic]`, `#[cron]`) or a hook (`#[on]`), not both",
        ));
    }
    if attrs.len() > 1 {
        return Err(syn::Error::new(
            attrs[1].span(),
            "a task has one schedule: one `#[periodic(...)]` or one `#[cron(...)]`",
        ));
    }
    let spec = if is_marker(&attrs[0], "periodic") {
        parse_periodic(&attrs[0])?
    } else {
        parse_cron(&attrs[0])?
    };
    let (is_async, extra, ret_span) = check_method(&f.sig, "a task")?;
    Ok(HookMethod {
        ident: f.sig.ident.clone(),
        labels: Vec::new(),
        is_async,
        extra,
        restart: None,
        task: Some(spec),
        sig_span: f.sig.span(),
        ret_span,
    })
}

/// A server's restart policy, as declared.
struct Restart {
    restarts: u32,
    within: f64,
    backoff: f64,
}

/// Parses `label` or, for servers, `server, restarts = 3, within = 60.0, backoff = 0.5`.
fn parse_on(attr: &Attribute) -> syn::Result<(Ident, Option<Restart>)> {
    attr.parse_args_with(|input: syn::parse::ParseStream| {
        let ident: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a hook label: `#[on(pre_start)]`, `#[on(post_start)]`, `#[on(pre_stop)]` or `#[on(server)]`",
            )
        })?;
        if input.is_empty() {
            return Ok((ident, None));
        }
        input.parse::<syn::Token![,]>()?;
        if ident != "server" {
            return Err(syn::Error::new(
                input.span(),
                "only `server` hooks take options (`restarts`, `within`, `backoff`)",
            ));
        }
        let (mut restarts, mut within, mut backoff) = (None, 60.0, 0.0);
        let options =
            syn::punctuated::Punctuated::<syn::MetaNameValue, syn::Token![,]>::parse_terminated(
                input,
            )?;
        for option in &options {
            let key = option_key(option);
            match key.as_str() {
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
        Ok((ident, Some(Restart { restarts, within, backoff })))
    })
}

/// The name of a `key = value` option (empty when it is not a plain name).
fn option_key(option: &syn::MetaNameValue) -> String {
    option
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A literal number of seconds: above 0, or 0 or more with `zero_ok`.
fn seconds(option: &syn::MetaNameValue, zero_ok: bool) -> syn::Result<f64> {
    let value = number(&option.value)?;
    let key = option_key(option);
    let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
    if ok {
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

fn expand_hooks(args: TokenStream2, mut item: ItemImpl) -> syn::Result<TokenStream2> {
    if !args.is_empty() {
        return Err(syn::Error::new(
            args.span(),
            "`#[microagent::hooks]` takes no arguments",
        ));
    }
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "`#[microagent::hooks]` goes on an inherent `impl` block, not a trait impl",
        ));
    }
    let mut errors: Option<syn::Error> = None;
    let mut push_error = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut methods = Vec::new();
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(f) => match take_hook(f) {
                Ok(Some(m)) => methods.push(m),
                Ok(None) => {}
                Err(e) => push_error(e),
            },
            ImplItem::Const(c) => reject_on(&mut c.attrs, &mut push_error),
            ImplItem::Type(t) => reject_on(&mut t.attrs, &mut push_error),
            ImplItem::Macro(m) => reject_on(&mut m.attrs, &mut push_error),
            _ => {}
        }
    }
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    if let Some(e) = errors {
        // Keep the block and an empty table, so the mistake is the only error.
        let errors = e.into_compile_error();
        return Ok(quote! {
            #errors
            #item
            impl #impl_generics ::microagent::hooks::Hooks for #self_ty #where_clause {
                const HOOKS: ::microagent::hooks::HookTable<Self> = ::microagent::hooks::HookTable {
                    pre_start: &[],
                    post_start: &[],
                    pre_stop: &[],
                    servers: &[],
                    tasks: &[],
                };
            }
        });
    }

    let shims = methods.iter().map(shim);
    let servers = methods
        .iter()
        .filter(|m| m.labels.contains(&Label::Server))
        .map(|m| {
            let name = m.ident.to_string();
            let shim = shim_ident(&m.ident);
            let restart = match &m.restart {
                Some(Restart {
                    restarts,
                    within,
                    backoff,
                }) => quote! {
                    ::std::option::Option::Some(::microagent::server::RestartPolicy {
                        restarts: #restarts,
                        within: #within,
                        backoff: #backoff,
                    })
                },
                None => quote!(::std::option::Option::None),
            };
            quote! {
                ::microagent::server::Server {
                    name: #name,
                    start: Self::#shim,
                    restart: #restart,
                }
            }
        });
    let tasks = methods.iter().filter_map(|m| {
        let spec = m.task.as_ref()?;
        let name = m.ident.to_string();
        let shim = shim_ident(&m.ident);
        let kind = if m.is_async {
            quote!(Async)
        } else {
            quote!(Sync)
        };
        let timeout = spec.timeout;
        let schedule = match &spec.schedule {
            TaskSchedule::Every {
                period,
                start_after,
            } => quote! {
                ::microagent::tasks::Schedule::Every {
                    period: #period,
                    start_after: #start_after,
                }
            },
            TaskSchedule::Cron { expression, local } => {
                let zone = if *local { quote!(Local) } else { quote!(Utc) };
                quote! {
                    ::microagent::tasks::Schedule::Cron {
                        expression: #expression,
                        zone: ::microagent::tasks::Zone::#zone,
                    }
                }
            }
        };
        Some(quote! {
            ::microagent::tasks::Task {
                name: #name,
                call: ::microagent::tasks::TaskCall::#kind(Self::#shim),
                timeout: #timeout,
                schedule: #schedule,
            }
        })
    });
    let table = [Label::PreStart, Label::PostStart, Label::PreStop].map(|label| {
        let entries = methods
            .iter()
            .filter(|m| m.labels.contains(&label))
            .map(|m| {
                let name = m.ident.to_string();
                let shim = shim_ident(&m.ident);
                let kind = if m.is_async {
                    quote!(Async)
                } else {
                    quote!(Sync)
                };
                quote! {
                    ::microagent::hooks::Hook {
                        name: #name,
                        call: ::microagent::hooks::HookCall::#kind(Self::#shim),
                    }
                }
            });
        quote!(&[#(#entries),*])
    });
    let [pre_start, post_start, pre_stop] = table;

    Ok(quote! {
        #item

        #[doc(hidden)]
        impl #impl_generics #self_ty #where_clause {
            #(#shims)*
        }

        impl #impl_generics ::microagent::hooks::Hooks for #self_ty #where_clause {
            const HOOKS: ::microagent::hooks::HookTable<Self> = ::microagent::hooks::HookTable {
                pre_start: #pre_start,
                post_start: #post_start,
                pre_stop: #pre_stop,
                servers: &[#(#servers),*],
                tasks: &[#(#tasks),*],
            };
        }
    })
}

fn reject_on(attrs: &mut Vec<Attribute>, push_error: &mut impl FnMut(syn::Error)) {
    for attr in attrs.iter().filter(|a| is_hook_marker(a)) {
        push_error(syn::Error::new(
            attr.span(),
            "`#[on(...)]`, `#[periodic(...)]` and `#[cron(...)]` mark methods; this is not a method",
        ));
    }
    attrs.retain(|a| !is_hook_marker(a));
}

/// Strips `#[on(...)]` from a method and checks that the method can be a hook.
fn take_hook(f: &mut ImplItemFn) -> syn::Result<Option<HookMethod>> {
    if f.attrs.iter().any(is_task) {
        return take_task(f).map(Some);
    }
    let on_attrs: Vec<Attribute> = f.attrs.iter().filter(|a| is_on(a)).cloned().collect();
    if on_attrs.is_empty() {
        return Ok(None);
    }
    f.attrs.retain(|a| !is_on(a));

    let mut labels = Vec::new();
    let mut restart = None;
    for attr in &on_attrs {
        let (ident, policy) = parse_on(attr)?;
        let label = Label::parse(&ident)?;
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
    if labels.contains(&Label::Server) && labels.len() > 1 {
        return Err(syn::Error::new(
            f.sig.ident.span(),
            "a server hook cannot also be a lifecycle hook: it runs for as long as the agent",
        ));
    }

    let sig = &f.sig;
    if labels == [Label::Server] {
        return take_server(f, restart).map(Some);
    }
    let (is_async, extra, ret_span) = check_method(sig, "a hook")?;
    Ok(Some(HookMethod {
        ident: sig.ident.clone(),
        labels,
        is_async,
        extra,
        restart: None,
        task: None,
        sig_span: sig.span(),
        ret_span,
    }))
}

/// Checks the signature shared by hooks and tasks: `fn` or `async fn`,
/// `&mut self` (or `&self`), at most a context (sync) or address (async).
fn check_method(sig: &syn::Signature, what: &str) -> syn::Result<(bool, Extra, Span)> {
    let ident = &sig.ident;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("{what} cannot be generic: the lifecycle calls it with nothing to infer from"),
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() => {}
        Some(FnArg::Receiver(r)) => {
            return Err(syn::Error::new(
                r.span(),
                format!("{what} takes `&mut self`, not `self`: the agent stays alive after it"),
            ))
        }
        _ => {
            return Err(syn::Error::new(
                ident.span(),
                format!("{what} is a method: its first parameter is `&mut self`"),
            ))
        }
    }
    let is_async = sig.asyncness.is_some();
    let extra = match inputs.next() {
        None => Extra::None,
        Some(FnArg::Typed(arg)) => match (&*arg.ty, is_async) {
            (Type::Reference(r), false) if r.mutability.is_some() => Extra::Context,
            (_, false) => {
                return Err(syn::Error::new(
                    arg.ty.span(),
                    format!("the second parameter of a sync {} is the agent's context: `ctx: &mut Context<Self>`", &what[2..]),
                ))
            }
            (Type::Reference(_), true) => {
                return Err(syn::Error::new(
                    arg.ty.span(),
                    format!(
                        "an async {} cannot borrow the context across `.await`; \
                         take the agent's address (`addr: Addr<Self>`) or make it a plain `fn`",
                        &what[2..]
                    ),
                ))
            }
            (_, true) => Extra::Address,
        },
        Some(other) => return Err(syn::Error::new(other.span(), "unexpected parameter")),
    };
    if let Some(arg) = inputs.next() {
        return Err(syn::Error::new(
            arg.span(),
            format!(
                "{what} takes `&mut self` and at most one more parameter: \
                 `ctx: &mut Context<Self>` (sync) or `addr: Addr<Self>` (async)"
            ),
        ));
    }
    let ret_span = match &sig.output {
        syn::ReturnType::Default => sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    Ok((is_async, extra, ret_span))
}

/// Checks a `#[on(server)]` method: `fn name(&self [, srv: ServerContext<Self>]) -> impl Future`.
fn take_server(f: &ImplItemFn, restart: Option<Restart>) -> syn::Result<HookMethod> {
    let sig = &f.sig;
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span,
            "a server hook is a plain `fn` returning a `'static` future: it runs alongside the \
             agent's handlers, so it cannot hold `self` across `.await`; clone what it needs \
             from `&self`, then return `async move { ... }`",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a server hook cannot be generic",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() => {}
        Some(other) => {
            return Err(syn::Error::new(
                other.span(),
                "a server hook takes `&self` (or `&mut self`) to build its future",
            ))
        }
        None => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a server hook is a method: its first parameter is `&self`",
            ))
        }
    }
    let extra = match inputs.next() {
        None => Extra::None,
        Some(FnArg::Typed(arg)) if !matches!(&*arg.ty, Type::Reference(_)) => Extra::Address,
        Some(other) => return Err(syn::Error::new(
            other.span(),
            "a server hook's second parameter is its context, by value: `srv: ServerContext<Self>`",
        )),
    };
    if let Some(arg) = inputs.next() {
        return Err(syn::Error::new(
            arg.span(),
            "a server hook takes `&self` and at most its context: `srv: ServerContext<Self>`",
        ));
    }
    let ret_span = match &sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => return Err(syn::Error::new(
            sig.ident.span(),
            "a server hook returns its future: `-> impl Future<Output = Result<(), E>> + 'static`",
        )),
    };
    Ok(HookMethod {
        ident: sig.ident.clone(),
        labels: vec![Label::Server],
        is_async: false,
        extra,
        restart,
        task: None,
        sig_span: sig.span(),
        ret_span,
    })
}

fn shim_ident(method: &Ident) -> Ident {
    format_ident!("__microagent_hook_{}", method)
}

/// A hygienic identifier whose errors point at `at`.
fn local(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

fn shim(m: &HookMethod) -> TokenStream2 {
    let method = &m.ident;
    let shim = shim_ident(method);
    let ctx = local("ctx", Span::call_site());
    let this = local("this", m.sig_span);
    // Errors about the return type point at the return type: the check is
    // written with its span and refers only to tokens spanned the same way.
    if m.labels.contains(&Label::Server) {
        let srv = local("srv", Span::call_site());
        let (unused, arg) = match m.extra {
            Extra::Address => (quote!(), quote!(#srv)),
            _ => (quote!(let _ = #srv;), quote!()),
        };
        let check = quote_spanned! {m.ret_span=>
            ::microagent::__private::server_future(future)
        };
        return quote! {
            #[doc(hidden)]
            fn #shim(
                #this: &mut Self,
                #srv: ::microagent::ServerContext<Self>,
            ) -> ::microagent::server::ServerFuture {
                #unused
                let future = #this.#method(#arg);
                #check
            }
        };
    }
    if m.is_async {
        let (get_addr, arg) = match m.extra {
            Extra::Address => (
                quote!(let addr = ::microagent::actix::AsyncContext::address(#ctx);),
                quote!(addr),
            ),
            _ => (quote!(let _ = #ctx;), quote!()),
        };
        let take = quote_spanned! {m.sig_span=>
            ::microagent::__private::AsyncHookAgent::take_for_hook(lent)
        };
        if m.task.is_some() {
            // A task run: the timeout cancels the method's future, inside
            // the future that owns the agent, so the agent comes back.
            let run = quote_spanned! {m.ret_span=>
                ::microagent::__private::call_task(timeout, hook).await
            };
            return quote! {
                #[doc(hidden)]
                fn #shim(
                    #this: &mut Self,
                    #ctx: &mut ::microagent::Context<Self>,
                    timeout: ::std::time::Duration,
                ) -> ::microagent::hooks::HookFuture<Self> {
                    #get_addr
                    let lent = #this;
                    let mut agent = #take;
                    ::std::boxed::Box::pin(async move {
                        let hook = agent.#method(#arg);
                        let result = #run;
                        (agent, result)
                    })
                }
            };
        }
        let run = quote_spanned! {m.ret_span=>
            ::microagent::__private::call_async(hook).await
        };
        quote! {
            #[doc(hidden)]
            fn #shim(
                #this: &mut Self,
                #ctx: &mut ::microagent::Context<Self>,
            ) -> ::microagent::hooks::HookFuture<Self> {
                #get_addr
                let lent = #this;
                let mut agent = #take;
                ::std::boxed::Box::pin(async move {
                    let hook = agent.#method(#arg);
                    let result = #run;
                    (agent, result)
                })
            }
        }
    } else {
        let (unused, arg) = match m.extra {
            Extra::Context => (quote!(), quote!(#ctx)),
            _ => (quote!(let _ = #ctx;), quote!()),
        };
        let check = quote_spanned! {m.ret_span=>
            ::microagent::__private::IntoHookResult::into_hook_result(returned)
        };
        quote! {
            #[doc(hidden)]
            fn #shim(
                #this: &mut Self,
                #ctx: &mut ::microagent::Context<Self>,
            ) -> ::microagent::hooks::HookResult {
                #unused
                let returned = #this.#method(#arg);
                #check
            }
        }
    }
}
