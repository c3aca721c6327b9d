//! Code generation: the impls `#[derive(MicroAgent)]` writes, and the shims
//! and declaration table `#[microagent::hooks]` writes. Generated code
//! names only public items and `::microagent::__private`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, ItemImpl};

use crate::attr::AgentOptions;

use crate::model::{
    Declaration, Extra, Kind, Label, Restart, Schedule, Seconds, Signature, ZoneSpec,
};

/// The impls of `#[derive(MicroAgent)]`: `Agent`, `Actor` (whose methods
/// drive the lifecycle) and the handlers every agent has.
pub(crate) fn derive(input: &DeriveInput, options: &AgentOptions) -> TokenStream {
    let ident = &input.ident;
    let name = &options.name;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // Agents that are not `Default` name what the actor holds while an
    // async hook owns the agent; the others get it from `Default`.
    let stand_in = options.stand_in.as_ref().map(|stand_in| {
        quote! {
            #[automatically_derived]
            impl #impl_generics ::microagent::__private::AsyncHookAgent
                for #ident #ty_generics #where_clause
            {
                fn take_for_hook(&mut self) -> Self {
                    ::std::mem::replace(self, #stand_in)
                }
            }
        }
    });
    let handlers = message_handlers(input);
    quote! {
        #stand_in

        #[automatically_derived]
        impl #impl_generics ::microagent::__private::Sealed for #ident #ty_generics #where_clause {}

        #[automatically_derived]
        impl #impl_generics ::microagent::Agent for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
        }

        #[automatically_derived]
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

        #handlers
    }
}

/// The actix handlers of the messages every agent takes: each hands the
/// message to the lifecycle.
fn message_handlers(input: &DeriveInput) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let handler = |message: TokenStream, result: TokenStream, body: TokenStream| {
        quote! {
            #[automatically_derived]
            impl #impl_generics ::microagent::actix::Handler<#message>
                for #ident #ty_generics #where_clause
            {
                type Result = #result;

                fn handle(&mut self, msg: #message, ctx: &mut Self::Context) -> Self::Result {
                    #body
                }
            }
        }
    };
    let private = quote!(::microagent::__private);
    [
        handler(
            quote!(::microagent::StopAgent),
            quote!(()),
            quote! { let _ = msg; ::microagent::actix::ActorContext::stop(ctx) },
        ),
        handler(
            quote!(::microagent::GetInfo),
            quote!(::microagent::actix::MessageResult<::microagent::GetInfo>),
            quote! {
                let _ = msg;
                ::microagent::actix::MessageResult(#private::running_info(self, ctx))
            },
        ),
        handler(
            quote!(#private::Deliver),
            quote!(()),
            quote!(#private::deliver(self, ctx, msg)),
        ),
        handler(
            quote!(#private::Consume),
            quote!(()),
            quote!(#private::consume(self, ctx, msg)),
        ),
        handler(
            quote!(::microagent::ServerInterrupt),
            quote!(()),
            quote!(#private::interrupt(self, ctx, msg)),
        ),
    ]
    .into_iter()
    .collect()
}

/// The hooks block itself, a shim per declaration and the declaration table.
pub(crate) fn hooks(item: &ItemImpl, declarations: &[Declaration]) -> TokenStream {
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let shims = declarations.iter().map(shim);
    let table = table(declarations);
    // A constant expression in a declaration is checked where the table is
    // evaluated: evaluate it with the crate, not when the agent is first
    // started (an associated constant is evaluated only once used).
    let has_constants = declarations.iter().any(|d| match &d.kind {
        Kind::Task(spec) => matches!(
            &spec.schedule,
            Schedule::Every { period, start_after }
                if matches!(period, Seconds::Const { .. }) || matches!(start_after, Seconds::Const { .. })
        ),
        _ => false,
    });
    let evaluate = (has_constants && item.generics.params.is_empty()).then(|| {
        quote! {
            const _: () = {
                let _ = <#self_ty as ::microagent::__private::Hooks>::HOOKS;
            };
        }
    });
    quote! {
        #evaluate

        #item

        #[doc(hidden)]
        impl #impl_generics #self_ty #where_clause {
            #(#shims)*
        }

        #[automatically_derived]
        // A missing hooks block is reported as such, not with a list of
        // the agents that have one.
        #[diagnostic::do_not_recommend]
        impl #impl_generics ::microagent::__private::Hooks for #self_ty #where_clause {
            const HOOKS: ::microagent::__private::HookTable<Self> = #table;
        }
    }
}

/// The table literal: one field per kind that has entries, then
/// `..HookTable::EMPTY`, so that a new kind does not touch the others.
fn table(declarations: &[Declaration]) -> TokenStream {
    let mut fields = Vec::new();
    for label in Label::LIFECYCLE {
        let entries: Vec<TokenStream> = declarations
            .iter()
            .filter(|d| d.has_label(label))
            .map(|d| {
                let name = d.method.to_string();
                let call = call(d);
                quote!(::microagent::__private::Hook { name: #name, call: #call })
            })
            .collect();
        if !entries.is_empty() {
            let field = format_ident!("{}", label.name());
            fields.push(quote!(#field: &[#(#entries),*]));
        }
    }
    let servers: Vec<TokenStream> = declarations.iter().filter_map(server_entry).collect();
    if !servers.is_empty() {
        fields.push(quote!(servers: &[#(#servers),*]));
    }
    let tasks: Vec<TokenStream> = declarations.iter().filter_map(task_entry).collect();
    if !tasks.is_empty() {
        fields.push(quote!(tasks: &[#(#tasks),*]));
    }
    let receivers: Vec<TokenStream> = declarations.iter().filter_map(receiver_entry).collect();
    if !receivers.is_empty() {
        fields.push(quote!(receivers: &[#(#receivers),*]));
    }
    let consumers: Vec<TokenStream> = declarations.iter().filter_map(consumer_entry).collect();
    if !consumers.is_empty() {
        fields.push(quote!(consumers: &[#(#consumers),*]));
    }
    quote! {
        ::microagent::__private::HookTable {
            #(#fields,)*
            ..::microagent::__private::HookTable::EMPTY
        }
    }
}

/// How the lifecycle calls a hook's or task's shim.
fn call(d: &Declaration) -> TokenStream {
    let shim = shim_ident(&d.method);
    let kind = if d.signature.is_async {
        quote!(Async)
    } else {
        quote!(Sync)
    };
    quote!(::microagent::__private::Call::#kind(Self::#shim))
}

fn server_entry(d: &Declaration) -> Option<TokenStream> {
    let Kind::Server(restart) = &d.kind else {
        return None;
    };
    let name = d.method.to_string();
    let shim = shim_ident(&d.method);
    let restart = match restart {
        Some(Restart {
            restarts,
            within,
            backoff,
        }) => {
            let (within, backoff) = (duration(*within), duration(*backoff));
            quote! {
                ::std::option::Option::Some(::microagent::__private::RestartPolicy {
                    restarts: #restarts,
                    within: #within,
                    backoff: #backoff,
                })
            }
        }
        None => quote!(::std::option::Option::None),
    };
    Some(quote! {
        ::microagent::__private::Server {
            name: #name,
            start: Self::#shim,
            restart: #restart,
        }
    })
}

fn task_entry(d: &Declaration) -> Option<TokenStream> {
    let Kind::Task(spec) = &d.kind else {
        return None;
    };
    let name = d.method.to_string();
    let call = call(d);
    let timeout = duration(spec.timeout);
    let schedule = match &spec.schedule {
        Schedule::Every {
            period,
            start_after,
        } => {
            let (period, start_after) = (seconds(period), seconds(start_after));
            quote! {
                ::microagent::__private::Schedule::Every {
                    period: #period,
                    start_after: #start_after,
                }
            }
        }
        Schedule::Cron { expression, zone } => {
            let zone = match zone {
                ZoneSpec::Utc => quote!(Utc),
                ZoneSpec::Local => quote!(Local),
                ZoneSpec::Named(name) => quote!(Named(#name)),
            };
            quote! {
                ::microagent::__private::Schedule::Cron {
                    expression: #expression,
                    zone: ::microagent::__private::Zone::#zone,
                }
            }
        }
    };
    Some(quote! {
        ::microagent::__private::Task {
            name: #name,
            call: #call,
            timeout: #timeout,
            schedule: #schedule,
        }
    })
}

fn receiver_entry(d: &Declaration) -> Option<TokenStream> {
    let Kind::Receiver(spec) = &d.kind else {
        return None;
    };
    let name = d.method.to_string();
    let shim = shim_ident(&d.method);
    let signal = &spec.signal;
    let timeout = duration(spec.timeout);
    let kind = if d.signature.is_async {
        quote!(Async)
    } else {
        quote!(Sync)
    };
    Some(quote! {
        ::microagent::__private::Receiver {
            name: #name,
            signal: <#signal as ::microagent::__private::Signal>::NAME,
            timeout: #timeout,
            call: ::microagent::__private::Call::#kind(Self::#shim),
        }
    })
}

fn consumer_entry(d: &Declaration) -> Option<TokenStream> {
    let Kind::Consumer(spec) = &d.kind else {
        return None;
    };
    let name = d.method.to_string();
    let shim = shim_ident(&d.method);
    let queue = &spec.queue;
    let timeout = duration(spec.timeout);
    let backoff = duration(spec.backoff);
    let (attempts, prefetch) = (spec.attempts, spec.prefetch);
    let kind = if d.signature.is_async {
        quote!(Async)
    } else {
        quote!(Sync)
    };
    Some(quote! {
        ::microagent::__private::Consumer {
            name: #name,
            queue: <#queue as ::microagent::__private::Queue>::NAME,
            binding: ::microagent::__private::Binding {
                exchange: <#queue as ::microagent::__private::Queue>::EXCHANGE,
                topics: <#queue as ::microagent::__private::Queue>::TOPICS,
            },
            options: ::microagent::__private::ConsumerOptions {
                timeout: #timeout,
                attempts: #attempts,
                backoff: #backoff,
                prefetch: #prefetch,
            },
            call: ::microagent::__private::Call::#kind(Self::#shim),
        }
    })
}

/// The shim of a consumer: decode the job, call the method, settle it
/// (done, failed, or poison when the message does not decode).
fn consumer_shim(d: &Declaration, queue: &syn::Type, timeout: f64) -> TokenStream {
    let ShimNames {
        method,
        shim,
        sig,
        this,
        ctx,
    } = ShimNames::of(d);
    // A message of the wrong type is reported at the method's parameter.
    let arg = local("message", sig.signal_span.unwrap_or(sig.sig_span));
    let check = quote_spanned! {sig.ret_span=>
        ::microagent::__private::IntoHookResult::into_hook_result
    };
    if !sig.is_async {
        return quote! {
            #[doc(hidden)]
            fn #shim(
                #this: &mut Self,
                #ctx: &mut ::microagent::Context<Self>,
                job: ::microagent::__private::Job,
            ) -> ::microagent::__private::HookResult {
                let _ = #ctx;
                let (#arg, settle) = ::microagent::__private::decode_job::<#queue>(job)?;
                ::microagent::__private::consume_sync(settle, || #check(#this.#method(#arg)))
            }
        };
    }
    let timeout = duration(timeout);
    let input = quote!(job: ::microagent::__private::Job);
    let body = quote! {
        match ::microagent::__private::decode_job::<#queue>(job) {
            ::std::result::Result::Ok((#arg, settle)) => {
                let run = async { #check(agent.#method(#arg).await) };
                settle.done(::microagent::__private::consume_timed(#timeout, run).await)
            }
            ::std::result::Result::Err(failure) => ::std::result::Result::Err(failure),
        }
    };
    async_input_shim(d, input, body)
}

/// The shim of a receiver: decode the delivery, call the method, answer.
fn receiver_shim(d: &Declaration, signal: &syn::Type, timeout: f64) -> TokenStream {
    let ShimNames {
        method,
        shim,
        sig,
        this,
        ctx,
    } = ShimNames::of(d);
    // A signal of the wrong type is reported at the method's parameter.
    let arg = local("signal", sig.signal_span.unwrap_or(sig.sig_span));
    // The sender's name is made a `String` only for a method that takes it.
    let sender = match sig.extra {
        Extra::Value => quote!(, ::std::string::ToString::to_string(&*sender)),
        _ => quote!(),
    };
    let answer = if sig.returns_result {
        quote_spanned!(sig.ret_span=> ::microagent::__private::answer_result)
    } else {
        quote_spanned!(sig.ret_span=> ::microagent::__private::answer_value)
    };
    if !sig.is_async {
        return quote! {
            #[doc(hidden)]
            fn #shim(
                #this: &mut Self,
                #ctx: &mut ::microagent::Context<Self>,
                delivery: ::microagent::__private::Delivery,
            ) -> ::microagent::__private::HookResult {
                let _ = #ctx;
                let (#arg, sender, reply) =
                    ::microagent::__private::decode_signal::<#signal>(delivery)?;
                let _ = &sender;
                ::microagent::__private::answer_sync(reply, || #this.#method(#arg #sender), #answer)
            }
        };
    }
    let timeout = duration(timeout);
    let input = quote!(delivery: ::microagent::__private::Delivery);
    let body = quote! {
        match ::microagent::__private::decode_signal::<#signal>(delivery) {
            ::std::result::Result::Ok((#arg, sender, reply)) => {
                let _ = &sender;
                let run = agent.#method(#arg #sender);
                ::microagent::__private::answer_timed(reply, #timeout, run, #answer).await
            }
            ::std::result::Result::Err(failure) => ::std::result::Result::Err(failure),
        }
    };
    async_input_shim(d, input, body)
}

/// The shim of an async receiver or consumer: it takes its input, lends
/// the agent to a future that runs `body` (which names the agent `agent`)
/// and hands the agent back with the result.
fn async_input_shim(d: &Declaration, input: TokenStream, body: TokenStream) -> TokenStream {
    let ShimNames {
        shim,
        sig,
        this,
        ctx,
        ..
    } = ShimNames::of(d);
    let take = quote_spanned! {sig.sig_span=>
        ::microagent::__private::AsyncHookAgent::take_for_hook(lent)
    };
    quote! {
        #[doc(hidden)]
        fn #shim(
            #this: &mut Self,
            #ctx: &mut ::microagent::Context<Self>,
            #input,
        ) -> ::microagent::__private::HookFuture<Self> {
            let _ = #ctx;
            let lent = #this;
            let mut agent = #take;
            ::std::boxed::Box::pin(async move {
                let result = #body;
                (agent, result)
            })
        }
    }
}

/// A declared number of seconds as a `Duration` constant (to the nanosecond).
/// A declaration's seconds as a `Duration`: a literal at once; a constant
/// expression evaluated and checked where the table is (a value that is not
/// a number of seconds fails the build with the option's name).
fn seconds(value: &Seconds) -> TokenStream {
    match value {
        Seconds::Literal(value) => duration(*value),
        Seconds::Const { expr, key, zero_ok } => {
            let (check, message) = if *zero_ok {
                (
                    quote!(seconds >= 0.0),
                    format!("`{key}` is a number of seconds, 0 or more"),
                )
            } else {
                (
                    quote!(seconds > 0.0),
                    format!("`{key}` is a number of seconds above 0"),
                )
            };
            quote_spanned! {expr.span()=>
                {
                    // An integer or a float constant: the cast is the user's
                    // type's, not a redundant one in their code.
                    #[allow(clippy::unnecessary_cast, trivial_numeric_casts)]
                    let seconds = (#expr) as f64;
                    ::std::assert!(seconds.is_finite() && #check, #message);
                    ::microagent::__private::Duration::from_nanos((seconds * 1e9) as u64)
                }
            }
        }
    }
}

fn duration(seconds: f64) -> TokenStream {
    let nanos = (seconds * 1e9).round() as u64;
    quote!(::microagent::__private::Duration::from_nanos(#nanos))
}

fn shim_ident(method: &Ident) -> Ident {
    format_ident!("__microagent_hook_{}", method)
}

/// What every shim names: the user's method, the shim's own name, the
/// method's signature, and hygienic `this` (spanned at the signature) and
/// `ctx`.
struct ShimNames<'a> {
    method: &'a Ident,
    shim: Ident,
    sig: &'a Signature,
    this: Ident,
    ctx: Ident,
}

impl<'a> ShimNames<'a> {
    fn of(d: &'a Declaration) -> Self {
        let sig = &d.signature;
        ShimNames {
            method: &d.method,
            shim: shim_ident(&d.method),
            sig,
            this: local("this", sig.sig_span),
            ctx: local("ctx", Span::call_site()),
        }
    }
}

/// A hygienic identifier whose errors point at `at`.
fn local(name: &str, at: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(at))
}

/// The shim the lifecycle calls for one declaration. Errors about the
/// return type point at the return type: each check is written with its
/// span and refers only to tokens spanned the same way.
fn shim(d: &Declaration) -> TokenStream {
    match &d.kind {
        Kind::Receiver(spec) => receiver_shim(d, &spec.signal, spec.timeout),
        Kind::Consumer(spec) => consumer_shim(d, &spec.queue, spec.timeout),
        Kind::Server(_) => server_shim(d),
        _ if !d.signature.is_async => sync_shim(d),
        _ => async_shim(d),
    }
}

/// A server hook's shim: its future, checked to be one.
fn server_shim(d: &Declaration) -> TokenStream {
    let ShimNames {
        method,
        shim,
        sig,
        this,
        ..
    } = ShimNames::of(d);
    let srv = local("srv", Span::call_site());
    let (unused, arg) = match sig.extra {
        Extra::Value => (quote!(), quote!(#srv)),
        _ => (quote!(let _ = #srv;), quote!()),
    };
    let check = quote_spanned! {sig.ret_span=>
        ::microagent::__private::server_future(future)
    };
    quote! {
        #[doc(hidden)]
        fn #shim(
            #this: &mut Self,
            #srv: ::microagent::ServerContext<Self>,
        ) -> ::microagent::__private::ServerFuture {
            #unused
            let future = #this.#method(#arg);
            #check
        }
    }
}

/// A plain `fn` hook or task's shim: its result, as a hook result.
fn sync_shim(d: &Declaration) -> TokenStream {
    let ShimNames {
        method,
        shim,
        sig,
        this,
        ctx,
    } = ShimNames::of(d);
    let (unused, arg) = match sig.extra {
        Extra::Context => (quote!(), quote!(#ctx)),
        _ => (quote!(let _ = #ctx;), quote!()),
    };
    let check = quote_spanned! {sig.ret_span=>
        ::microagent::__private::IntoHookResult::into_hook_result(returned)
    };
    quote! {
        #[doc(hidden)]
        fn #shim(
            #this: &mut Self,
            #ctx: &mut ::microagent::Context<Self>,
            _: (),
        ) -> ::microagent::__private::HookResult {
            #unused
            let returned = #this.#method(#arg);
            #check
        }
    }
}

/// An `async fn` hook or task's shim: a future that owns the agent while
/// it runs, and gives it back either way.
fn async_shim(d: &Declaration) -> TokenStream {
    let ShimNames {
        method,
        shim,
        sig,
        this,
        ctx,
    } = ShimNames::of(d);
    let (get_addr, arg) = match sig.extra {
        Extra::Value => (
            quote!(let addr = ::microagent::actix::AsyncContext::address(#ctx);),
            quote!(addr),
        ),
        _ => (quote!(let _ = #ctx;), quote!()),
    };
    let take = quote_spanned! {sig.sig_span=>
        ::microagent::__private::AsyncHookAgent::take_for_hook(lent)
    };
    // A run with a timeout is cancelled inside the future that owns the
    // agent, so the agent comes back either way.
    let run = match d.timeout() {
        Some(seconds) => {
            let timeout = duration(seconds);
            quote_spanned! {sig.ret_span=>
                ::microagent::__private::call_timed(#timeout, hook).await
            }
        }
        None => quote_spanned! {sig.ret_span=>
            ::microagent::__private::call_async(hook).await
        },
    };
    quote! {
        #[doc(hidden)]
        fn #shim(
            #this: &mut Self,
            #ctx: &mut ::microagent::Context<Self>,
            _: (),
        ) -> ::microagent::__private::HookFuture<Self> {
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
}
