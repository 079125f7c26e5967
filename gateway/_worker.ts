// Entry point of a gateway serving Worker. Messages from the main thread:
//   { type: "start", setup, publicUrl? } → { type: "listening", port, noDelay } or { type: "failed", message }
//   { type: "public-url", url }
//   { type: "stop" } → { type: "stopped" }
import { JsonLogger } from "../protocol/mod.ts";
import { type Serving, type ServingSetup, startServing } from "./_serving.ts";

type Incoming =
  | { type: "start"; setup: ServingSetup; publicUrl?: string }
  | { type: "public-url"; url: string }
  | { type: "stop" };

const scope = self as unknown as Worker & { close(): void };
let serving: Serving | undefined;

scope.onmessage = async (e: MessageEvent<Incoming>) => {
  const m = e.data;
  if (m.type === "start") {
    const log = new JsonLogger(`gateway.worker-${m.setup.index}`, m.setup.config.logLevel);
    try {
      serving = await startServing(m.setup, log, m.publicUrl);
      scope.postMessage({
        type: "listening",
        port: serving.server.port,
        noDelay: serving.server.noDelay,
      });
    } catch (err) {
      scope.postMessage({ type: "failed", message: (err as Error).message });
    }
  } else if (m.type === "public-url") {
    serving?.setPublicUrl(m.url);
  } else if (m.type === "stop") {
    await serving?.stop();
    scope.postMessage({ type: "stopped" });
  }
};
