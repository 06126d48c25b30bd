/** `MaterialStore` in memory, for the in-memory store (one process: a take is a delete of the map entry). */
import { checkMaterialKey, isLive, type MaterialEntry, type MaterialKind, type MaterialStore, type PutMaterialOptions } from './material.js';

export class MemoryMaterial implements MaterialStore {
  private readonly entries = new Map<string, MaterialEntry>();

  private static key(kind: MaterialKind, k: string): string {
    checkMaterialKey(kind, k);
    return `${kind}\x00${k}`;
  }

  async getMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    const e = this.entries.get(MemoryMaterial.key(kind, k));
    return isLive(e, now) ? Buffer.from(e.value) : undefined;
  }

  async putMaterial(kind: MaterialKind, k: string, value: Buffer, opts: PutMaterialOptions = {}): Promise<boolean> {
    const key = MemoryMaterial.key(kind, k);
    if (opts.ifAbsent && isLive(this.entries.get(key), new Date())) return false;
    this.entries.set(key, { value: Buffer.from(value), ...(opts.expiresAt ? { expiresAt: opts.expiresAt.getTime() } : {}) });
    return true;
  }

  async takeMaterial(kind: MaterialKind, k: string, now = new Date()): Promise<Buffer | undefined> {
    const key = MemoryMaterial.key(kind, k);
    const e = this.entries.get(key);
    this.entries.delete(key);
    return isLive(e, now) ? e.value : undefined;
  }

  async deleteMaterial(kind: MaterialKind, k: string): Promise<void> {
    this.entries.delete(MemoryMaterial.key(kind, k));
  }

  async pruneMaterial(kind: MaterialKind, now = new Date()): Promise<number> {
    let n = 0;
    for (const [key, e] of this.entries) {
      if (key.startsWith(`${kind}\x00`) && !isLive(e, now)) {
        this.entries.delete(key);
        n++;
      }
    }
    return n;
  }
}
