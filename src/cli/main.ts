#!/usr/bin/env bun
/**
 * Entry point of the `pilot` executable (also installed as `pilotctl`).
 * The program name follows how we were invoked, so help and hints match.
 */
import { basename } from "node:path";
import { dispatch } from "./dispatch.ts";
import { buildProgram } from "./program.ts";

function programName(): string {
  const invoked = basename(process.argv0 ?? "");
  return invoked === "pilotctl" ? "pilotctl" : "pilot";
}

const code = await dispatch(buildProgram(programName()), process.argv.slice(2));
process.exitCode = code;
