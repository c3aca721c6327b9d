//! `#[derive(Signal)]`: a signal's wire name and argument names, checked
//! against what the Python wire format can carry.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr};

/// Names the wire reserves: `response` is the RPC answers' channel.
const RESERVED_NAMES: [&str; 1] = ["response"];
/// Argument names a Python receiver takes as its own parameters.
const RESERVED_ARGS: [&str; 2] = ["signal", "sender"];

/// The impl of `microagent::bus::Signal`.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named,
            _ => {
                return Err(syn::Error::new(
                    ident.span(),
                    "a signal's arguments are named fields: `struct UserCreated { user_id: u64 }` (or `{}` for none)",
                ))
            }
        },
        _ => {
            return Err(syn::Error::new(
                ident.span(),
                "a signal is a struct with named fields (its arguments)",
            ))
        }
    };
    let name = signal_name(input)?;
    check_name(&name.value(), name.span())?;
    let mut args = Vec::new();
    for field in &fields.named {
        let Some(field_ident) = &field.ident else {
            continue;
        };
        let (arg, span) = match serde_rename(&field.attrs) {
            Some(renamed) => (renamed.value(), renamed.span()),
            None => (field_ident.to_string(), field_ident.span()),
        };
        let arg = arg.strip_prefix("r#").map(str::to_owned).unwrap_or(arg);
        if RESERVED_ARGS.contains(&arg.as_str()) {
            return Err(syn::Error::new(
                span,
                format!(
                    "`{arg}` cannot be a signal argument: Python receivers take `signal` and `sender` as their own parameters"
                ),
            ));
        }
        check_part(&arg, span, "an argument name")?;
        args.push(arg);
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::microagent::bus::Signal for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const ARGS: &'static [&'static str] = &[#(#args),*];
        }
    })
}

/// `#[signal(name = "...")]`, or the type's name in snake case.
fn signal_name(input: &DeriveInput) -> syn::Result<LitStr> {
    let mut name = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("signal")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else {
                Err(meta.error("unknown `signal` option; expected `name = \"...\"`"))
            }
        })?;
    }
    Ok(name
        .unwrap_or_else(|| LitStr::new(&snake_case(&input.ident.to_string()), input.ident.span())))
}

/// The field's `#[serde(rename = "...")]`, which is its name on the wire.
fn serde_rename(attrs: &[syn::Attribute]) -> Option<LitStr> {
    let mut renamed = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // Other serde options are serde's business: skip their values.
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if let Ok(value) = meta.value() {
                    if let Ok(lit) = value.parse::<LitStr>() {
                        renamed = Some(lit);
                    }
                }
            } else if let Ok(value) = meta.value() {
                let _: syn::Expr = value.parse()?;
            }
            Ok(())
        });
    }
    renamed
}

fn check_name(name: &str, span: Span) -> syn::Result<()> {
    if RESERVED_NAMES.contains(&name) {
        return Err(syn::Error::new(
            span,
            format!("`{name}` cannot be a signal name: the bus answers RPC calls on it"),
        ));
    }
    check_part(name, span, "a signal name")
}

/// A part of a channel (`prefix:name:sender#id`): not empty, no `:` or `#`.
fn check_part(part: &str, span: Span, what: &str) -> syn::Result<()> {
    if part.is_empty() {
        return Err(syn::Error::new(span, format!("{what} cannot be empty")));
    }
    if let Some(bad) = part.chars().find(|c| matches!(c, ':' | '#')) {
        return Err(syn::Error::new(
            span,
            format!(
                "{what} cannot contain `{bad}`: the wire format separates `prefix:name:sender#request` with them"
            ),
        ));
    }
    Ok(())
}

/// `UserCreated` → `user_created`, `HTTPRequest` → `http_request`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn type_names_become_snake_case_wire_names() {
        assert_eq!(snake_case("UserCreated"), "user_created");
        assert_eq!(snake_case("HTTPRequest"), "http_request");
        assert_eq!(snake_case("Ping"), "ping");
        assert_eq!(snake_case("Order2Shipped"), "order2_shipped");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }
}
