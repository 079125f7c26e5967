/**
 * XML for the WebDAV endpoint: request bodies checked and parsed by fast-xml-parser, with element
 * namespaces resolved (WebDAV names properties by namespace and local name), and answers built by
 * its builder.
 *
 * @module
 */

import { XMLBuilder, XMLParser, XMLValidator } from "fast-xml-parser";
import { ValidationError } from "../../protocol/mod.ts";

/** The WebDAV namespace. */
export const DAV = "DAV:";

/** An element with its namespace resolved. */
export interface XmlElement {
  /** Namespace URI; empty when the element is in no namespace. */
  ns: string;
  /** Local name. */
  name: string;
  /** Attributes by their qualified name, namespace declarations excluded. */
  attrs: Record<string, string>;
  /** Child elements, in order. */
  children: XmlElement[];
  /** The element's own text, concatenated. */
  text: string;
}

/** Something the builder turns into XML: elements by qualified name, `@_` attributes, `#text`. */
export type XmlTree = { [key: string]: XmlTree | XmlTree[] | string };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  htmlEntities: true,
  maxNestedTags: 64,
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  suppressEmptyNode: true,
  format: false,
});

function bad(message: string): never {
  throw new ValidationError(message, { code: "bad_xml" });
}

type Raw = Record<string, unknown>;

/**
 * Parses an XML document and resolves its element namespaces.
 * @param text The document.
 * @returns Its root element.
 * @throws {ValidationError} `bad_xml` (400) when it is not well-formed, has a DOCTYPE, uses an
 * undeclared prefix or has no single root element.
 */
export function parseXml(text: string): XmlElement {
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) bad("XML with a DOCTYPE or entities is not accepted");
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    bad(`The body is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
  }
  let raw: Raw[];
  try {
    raw = parser.parse(text) as Raw[];
  } catch (err) {
    bad(`The body is not well-formed XML: ${(err as Error).message}`);
  }
  const roots = raw.filter((n) => elementName(n) !== undefined);
  if (roots.length !== 1) bad("The XML body must have one root element");
  return resolve(roots[0], new Map([["xml", "http://www.w3.org/XML/1998/namespace"]]));
}

function elementName(node: Raw): string | undefined {
  return Object.keys(node).find((k) => k !== ":@" && k !== "#text" && !k.startsWith("?"));
}

function resolve(node: Raw, scope: ReadonlyMap<string, string>): XmlElement {
  const qname = elementName(node)!;
  const rawAttrs = (node[":@"] ?? {}) as Record<string, string>;
  const inner = new Map(scope);
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (k === "xmlns") inner.set("", v);
    else if (k.startsWith("xmlns:")) inner.set(k.slice(6), v);
    else attrs[k] = String(v);
  }
  const colon = qname.indexOf(":");
  const prefix = colon < 0 ? "" : qname.slice(0, colon);
  const name = colon < 0 ? qname : qname.slice(colon + 1);
  const ns = inner.get(prefix);
  if (ns === undefined && prefix !== "") bad(`The XML prefix ${prefix} is not declared`);
  const children: XmlElement[] = [];
  let text = "";
  for (const child of (node[qname] ?? []) as Raw[]) {
    if ("#text" in child) text += String(child["#text"]);
    else if (elementName(child) !== undefined) children.push(resolve(child, inner));
  }
  return { ns: ns ?? "", name, attrs, children, text };
}

/**
 * The children of an element with a given namespace and name.
 * @param el The element.
 * @param ns Namespace URI.
 * @param name Local name.
 */
export function childrenNamed(el: XmlElement, ns: string, name: string): XmlElement[] {
  return el.children.filter((c) => c.ns === ns && c.name === name);
}

/**
 * Builds an XML document, with its declaration.
 * @param tree The content.
 */
export function buildXml(tree: XmlTree): string {
  return `<?xml version="1.0" encoding="utf-8"?>\n${builder.build(tree)}`;
}

/**
 * An element from a request, as a builder tree fragment that keeps its namespace: DAV elements
 * under the `D:` prefix, others under a prefix of their own declared on them.
 * @param el The element.
 * @param counter Numbers fresh prefixes; shared across one document.
 * @returns The qualified name and the content.
 */
export function echoElement(
  el: XmlElement,
  counter: { next: number } = { next: 0 },
): [string, XmlTree] {
  const content: XmlTree = {};
  let qname: string;
  if (el.ns === DAV) qname = `D:${el.name}`;
  else if (el.ns === "") qname = el.name;
  else {
    const prefix = `ns${counter.next++}`;
    qname = `${prefix}:${el.name}`;
    content[`@_xmlns:${prefix}`] = el.ns;
  }
  for (const child of el.children) {
    const [k, v] = echoElement(child, counter);
    const prev = content[k];
    if (prev === undefined) content[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else content[k] = [prev as XmlTree, v];
  }
  const text = el.text.trim();
  if (text) content["#text"] = text;
  return [qname, content];
}
