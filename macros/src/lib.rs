//! Procedural macros of [`microagent`](https://docs.rs/microagent): use them
//! through that crate, which re-exports them.
//!
//! The crate is split by stage: `attr` parses the attributes, `model` is
//! the typed model of a declaration, `valid` checks a marked method and
//! builds its model, `expand` generates code, `fallback` is what is emitted
//! on a mistake. Generated code names only `microagent`'s public items and
//! its hidden `__private` module.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use syn::spanned::Spanned;
use syn::{parse_macro_input, DeriveInput, ImplItem, ItemImpl, LitStr};

mod attr;
mod expand;
mod fallback;
mod model;
mod queue;
mod signal;
mod valid;

/// Makes a struct an agent. See `microagent::MicroAgent`.
///
/// Expands to impls of `microagent::Agent` (its name),
/// `actix::Actor` (with `microagent::Context` as context and `started`,
/// `stopping`, `stopped` driving the lifecycle) and the handlers of
/// `StopAgent`, `GetInfo` and `ServerInterrupt`.
#[proc_macro_derive(MicroAgent, attributes(microagent))]
pub fn derive_micro_agent(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a signal of the bus. See `microagent::bus::Signal`.
///
/// Expands to an impl of `microagent::bus::Signal`: its wire name
/// (`#[signal(name = "...")]`, or the type's name in snake case) and its
/// argument names (the fields, as serde names them).
#[proc_macro_derive(Signal, attributes(signal))]
pub fn derive_signal(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    signal::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a queue's message. See `microagent::broker::Queue`.
///
/// Expands to an impl of `microagent::broker::Queue`: the queue's name
/// (`#[queue(name = "...")]`, or the type's name in snake case).
#[proc_macro_derive(Queue, attributes(queue))]
pub fn derive_queue(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    queue::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Collects the declarations of an agent. See `microagent::hooks`.
///
/// Expands to the block itself (markers removed), a hidden shim per marked
/// method, and the agent's declaration table (`microagent::__private::Hooks`).
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
    fallback::outside("on", input.into()).into()
}

/// `#[periodic(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn periodic(_args: TokenStream, input: TokenStream) -> TokenStream {
    fallback::outside("periodic", input.into()).into()
}

/// `#[receiver(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn receiver(_args: TokenStream, input: TokenStream) -> TokenStream {
    fallback::outside("receiver", input.into()).into()
}

/// `#[consumer(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn consumer(_args: TokenStream, input: TokenStream) -> TokenStream {
    fallback::outside("consumer", input.into()).into()
}

/// `#[cron(...)]` outside a `#[microagent::hooks]` block: always an error.
#[proc_macro_attribute]
pub fn cron(_args: TokenStream, input: TokenStream) -> TokenStream {
    fallback::outside("cron", input.into()).into()
}

fn derive(input: &DeriveInput) -> syn::Result<TokenStream2> {
    if let syn::Data::Union(u) = &input.data {
        return Err(syn::Error::new(
            u.union_token.span,
            "an agent is a struct or an enum, not a union",
        ));
    }
    let ident = &input.ident;
    let mut options = attr::AgentOptions {
        name: LitStr::new(&ident.to_string(), ident.span()),
        stand_in: None,
    };
    // A wrong option is reported, but the impls are still generated so that
    // it is the only error.
    let mut option_errors = TokenStream2::new();
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("microagent"))
    {
        if let Err(e) = attr::agent_options(attr, &mut options) {
            option_errors.extend(e.into_compile_error());
        }
    }
    let mut out = option_errors;
    out.extend(expand::derive(input, &options));
    Ok(out)
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
    let mut errors = Vec::new();
    let mut declarations = Vec::new();
    for impl_item in &mut item.items {
        match impl_item {
            ImplItem::Fn(f) => match valid::declaration(f) {
                Ok(Some(d)) => declarations.push(d),
                Ok(None) => {}
                Err(e) => errors.push(e),
            },
            ImplItem::Const(c) => fallback::reject_markers(&mut c.attrs, &mut errors),
            ImplItem::Type(t) => fallback::reject_markers(&mut t.attrs, &mut errors),
            ImplItem::Macro(m) => fallback::reject_markers(&mut m.attrs, &mut errors),
            _ => {}
        }
    }
    let mut errors = errors.into_iter();
    if let Some(mut all) = errors.next() {
        // Keep the block and an empty table, so the mistakes are the only errors.
        all.extend(errors);
        return Ok(fallback::hooks(all, &item));
    }
    Ok(expand::hooks(&item, &declarations))
}
