// The WebGPU adapter the tests run on. Without a GPU, Node reaches WebGPU through the npm `webgpu`
// package (Dawn), which takes SwiftShader's software Vulkan driver (Debian's chromium ships it);
// Dawn refuses Mesa's lavapipe here. A machine with a GPU may set VK_ICD_FILENAMES itself.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
/** Mesa's lavapipe (Debian mesa-vulkan-drivers): Deno's adapter here, the one with shader-f16. */
export const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json';

/** Point Vulkan at SwiftShader unless the environment already chose a driver. Call before the first WebGPU use. */
export function useSoftwareVulkanUnlessSet(): void {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  process.env.XDG_RUNTIME_DIR ??= tmpdir(); // without it every Vulkan instance logs an error line
}
