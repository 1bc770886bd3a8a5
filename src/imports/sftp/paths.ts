/** Chroot-like paths of the SFTP drop point: every client path is read inside the account's folder. */

/** A client path → the path inside the account's folder, or null when it would climb above it. */
export function resolveInside(clientPath: string): string | null {
  if (clientPath.includes("\u0000")) return null;
  const parts: string[] = [];
  for (const segment of clientPath.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (parts.length === 0) return null;
      parts.pop();
    } else {
      parts.push(segment);
    }
  }
  return `/${parts.join("/")}`;
}
