export declare const ROOT: string;
export declare const WEB_OUT: string;
export declare function buildWeb(options?: { outdir?: string; minify?: boolean }): Promise<string>;
export declare function buildNodeWorker(options?: {
  entry?: string;
  outfile?: string;
  define?: Record<string, string>;
}): Promise<string>;
