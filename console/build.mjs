// Bundle src/main.ts into one minified script and copy the stylesheet beside it.
import { build } from "esbuild";
import { copyFileSync } from "node:fs";

const out = new URL("../functions/console/assets/", import.meta.url).pathname;
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  legalComments: "none",
  outfile: `${out}app.js`,
});
copyFileSync("src/app.css", `${out}app.css`);
