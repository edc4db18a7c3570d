export * from "./result.ts";
export * from "./address.ts";
export * from "./ports.ts";
export * from "./socket-address.ts";
export * from "./crc32.ts";
export * from "./packet.ts";
export * from "./limits.ts";
export * from "./tunnel-frame.ts";
