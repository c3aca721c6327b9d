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
    })
}

/// The labels `#[on(...)]` accepts, each with its hook-table field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    PreStart,
    PostStart,
    PreStop,
}

impl Label {
    const ALL: [Label; 3] = [Label::PreStart, Label::PostStart, Label::PreStop];

    fn name(self) -> &'static str {
        match self {
            Label::PreStart => "pre_start",
            Label::PostStart => "post_start",
            Label::PreStop => "pre_stop",
        }
    }

    fn parse(ident: &Ident) -> syn::Result<Label> {
        if let Some(label) = Label::ALL.into_iter().find(|l| ident == l.name()) {
            return Ok(label);
        }
        let hint = match ident.to_string().as_str() {
            "server" | "periodic" | "cron" => " (not supported yet)",
            _ => "",
        };
        Err(syn::Error::new(
            ident.span(),
            format!(
                "unknown hook label `{ident}`{hint}; expected one of: pre_start, post_start, pre_stop"
            ),
        ))
    }
}

fn is_on(attr: &Attribute) -> bool {
    let path = attr.path();
    path.is_ident("on")
        || (path.segments.len() == 2
            && path.segments[0].ident == "microagent"
            && path.segments[1].ident == "on")
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
    sig_span: Span,
    ret_span: Span,
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
                };
            }
        });
    }

    let shims = methods.iter().map(shim);
    let table = Label::ALL.map(|label| {
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
            };
        }
    })
}

fn reject_on(attrs: &mut Vec<Attribute>, push_error: &mut impl FnMut(syn::Error)) {
    for attr in attrs.iter().filter(|a| is_on(a)) {
        push_error(syn::Error::new(
            attr.span(),
            "`#[on(...)]` marks methods; this is not a method",
        ));
    }
    attrs.retain(|a| !is_on(a));
}

/// Strips `#[on(...)]` from a method and checks that the method can be a hook.
fn take_hook(f: &mut ImplItemFn) -> syn::Result<Option<HookMethod>> {
    let on_attrs: Vec<Attribute> = f.attrs.iter().filter(|a| is_on(a)).cloned().collect();
    if on_attrs.is_empty() {
        return Ok(None);
    }
    f.attrs.retain(|a| !is_on(a));

    let mut labels = Vec::new();
    for attr in &on_attrs {
        let ident: Ident = attr.parse_args().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a hook label: `#[on(pre_start)]`, `#[on(post_start)]` or `#[on(pre_stop)]`",
            )
        })?;
        let label = Label::parse(&ident)?;
        if labels.contains(&label) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{}` is given twice for this hook", label.name()),
            ));
        }
        labels.push(label);
    }

    let sig = &f.sig;
    let ident = sig.ident.clone();
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a hook cannot be generic: the lifecycle calls it with nothing to infer from",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() => {}
        Some(FnArg::Receiver(r)) => {
            return Err(syn::Error::new(
                r.span(),
                "a hook takes `&mut self`, not `self`: the agent stays alive after its hooks",
            ))
        }
        _ => {
            return Err(syn::Error::new(
                ident.span(),
                "a hook is a method: its first parameter is `&mut self`",
            ))
        }
    }
    let is_async = sig.asyncness.is_some();
    let extra = match inputs.next() {
        None => Extra::None,
        Some(FnArg::Typed(arg)) => match (&*arg.ty, is_async) {
            (Type::Reference(r), false) if r.mutability.is_some() => Extra::Context,
            (_, false) => return Err(syn::Error::new(
                arg.ty.span(),
                "a sync hook's second parameter is the agent's context: `ctx: &mut Context<Self>`",
            )),
            (Type::Reference(_), true) => {
                return Err(syn::Error::new(
                    arg.ty.span(),
                    "an async hook cannot borrow the context across `.await`; \
                     take the agent's address (`addr: Addr<Self>`) or make the hook a plain `fn`",
                ))
            }
            (_, true) => Extra::Address,
        },
        Some(other) => return Err(syn::Error::new(other.span(), "unexpected parameter")),
    };
    if let Some(arg) = inputs.next() {
        return Err(syn::Error::new(
            arg.span(),
            "a hook takes `&mut self` and at most one more parameter: \
             `ctx: &mut Context<Self>` (sync hooks) or `addr: Addr<Self>` (async hooks)",
        ));
    }
    let ret_span = match &sig.output {
        syn::ReturnType::Default => sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    Ok(Some(HookMethod {
        ident,
        labels,
        is_async,
        extra,
        sig_span: sig.span(),
        ret_span,
    }))
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
