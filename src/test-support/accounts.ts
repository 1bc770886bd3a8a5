/** A second account on a running test server, made the way an operator makes one. */
import { Accounts } from "../pipeline/accounts.js";
import type { TestServer } from "./server.js";

export async function accounts(s: TestServer) {
  return new Accounts(s.server.store).create(`other-${Math.random().toString(36).slice(2)}`);
}
